"""WSGI entry point: the HTTP server for pages and the API (see the README's production note).

``gunicorn config.wsgi:application --preload -k gthread``: with ``--preload`` the app, and with
it every view module, is imported once before the workers fork, so a worker's first request
does not pay for the imports (seconds on a busy machine).
"""

import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()
# Django imports the URL configuration on the first request; do it now instead.
get_resolver().url_patterns  # noqa: B018  (the access is the point: it imports them)
