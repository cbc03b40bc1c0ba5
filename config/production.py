"""Hardened overrides for ``TANDEM_ENV=production``; refuses to start when unsafe."""

import os

from django.core.exceptions import ImproperlyConfigured

_key = os.environ.get("DJANGO_SECRET_KEY", "")
if not _key or _key.startswith("dev-insecure") or len(_key) < 50 or len(set(_key)) < 5:
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY must be set to a random value of at least 50 characters in production."
    )
if os.environ.get("DJANGO_DEBUG", "0") == "1":
    raise ImproperlyConfigured("DJANGO_DEBUG=1 is not allowed in production.")
_hosts = [h.strip() for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "").split(",") if h.strip()]
if not _hosts or any(h == "*" or h.startswith("*") for h in _hosts):
    raise ImproperlyConfigured("DJANGO_ALLOWED_HOSTS must list explicit host names in production.")

SECRET_KEY = _key
DEBUG = False
ALLOWED_HOSTS = _hosts
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_SSL_REDIRECT = os.environ.get("TANDEM_SSL_REDIRECT", "1") == "1"
SECURE_HSTS_SECONDS = 31536000
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
