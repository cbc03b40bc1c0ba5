"""Tandem settings.

Everything that differs between a laptop, CI and production comes from the environment:

- ``DATABASE_URL``: defaults to a SQLite file under ``var/`` so a first run needs nothing;
  CI and production use PostgreSQL (``postgres://postgres@127.0.0.1:5432/tandem``).
- ``REDIS_URL``: when set, Channels uses Redis; otherwise an in-process channel layer.
- ``TANDEM_ENV=production`` turns on the hardened settings (see ``config/production.py``).
- ``TANDEM_DB_CONN_MAX_AGE``: persistent connections, 60 s; 0 for an ASGI process (below).
- ``TANDEM_DB_PREPARED_STATEMENTS=1``: prepared statements on PostgreSQL (see below).
"""

import ipaddress
import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from config.fieldcrypt import field_keys_from_environment

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("TANDEM_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)

# Development default only; config/production.py refuses to start without a real key.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "dev-insecure-tandem-key-change-me")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = [
    h.strip() for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")
]
if "testserver" not in ALLOWED_HOSTS:
    ALLOWED_HOSTS.append("testserver")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "channels",
    "django_tasks",
    "django_tasks_db",
    "annotation",
    "rlhf",
    "models_registry",
    "frontend",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "frontend.middleware.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "frontend.middleware.LoginThrottleMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "config.untrusted.BoundedPathIdsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASE_URL = os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'tandem.sqlite3'}")
# Persistent connections (seconds) suit the WSGI server (gunicorn threads keep theirs). Under
# ASGI (daphne, uvicorn) Django opens a connection per request thread and never reuses it, so
# an ASGI process must run with TANDEM_DB_CONN_MAX_AGE=0 or it exhausts max_connections.
CONN_MAX_AGE = int(os.environ.get("TANDEM_DB_CONN_MAX_AGE", "60"))
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=CONN_MAX_AGE)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE transactions take SQLite's write lock up front, so two claimers can never
    # interleave read-check-write: the SQLite fallback of SELECT ... FOR UPDATE SKIP LOCKED.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
else:
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    if os.environ.get("TANDEM_DB_PREPARED_STATEMENTS") == "1":
        # Server-side binding lets psycopg prepare a statement after its 5th run on a
        # connection, which saves PostgreSQL the planning (~40% of its CPU on the annotation
        # loop in bench/annotation_load.py). Off by default: it breaks transaction-mode
        # poolers (PgBouncer) and a few query shapes Django documents.
        DATABASES["default"]["OPTIONS"] = {"server_side_binding": True, "prepare_threshold": 5}
DATABASES["default"].setdefault("TEST", {})
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# Every authenticate() call (login page, admin login, /api/auth/token/) goes through the
# throttle: a fixed window per account and per client address, counted in the database.
AUTHENTICATION_BACKENDS = ["frontend.login_throttle.ThrottledModelBackend"]
TANDEM_LOGIN_WINDOW_SECONDS = int(os.environ.get("TANDEM_LOGIN_WINDOW_SECONDS", 900))
TANDEM_LOGIN_MAX_FAILURES_PER_USER = int(os.environ.get("TANDEM_LOGIN_MAX_FAILURES_PER_USER", 10))
TANDEM_LOGIN_MAX_FAILURES_PER_ADDRESS = int(
    os.environ.get("TANDEM_LOGIN_MAX_FAILURES_PER_ADDRESS", 100)
)
# Reverse proxies (addresses or CIDRs, comma-separated) whose X-Forwarded-For is believed: a
# request from one of them is counted under the right-most forwarded address that is not a
# trusted proxy (frontend.login_throttle.client_address). Empty: REMOTE_ADDR only, so behind
# a proxy every client shares the proxy's address limit.
TANDEM_TRUSTED_PROXIES = [
    p.strip() for p in os.environ.get("TANDEM_TRUSTED_PROXIES", "").split(",") if p.strip()
]
for _proxy in TANDEM_TRUSTED_PROXIES:
    try:  # a typo stops the start, not every login
        ipaddress.ip_network(_proxy, strict=False)
    except ValueError as _exc:
        raise ImproperlyConfigured(f"TANDEM_TRUSTED_PROXIES: {_exc}") from None
LOGIN_URL = "frontend:login"
LOGIN_REDIRECT_URL = "frontend:home"
LOGOUT_REDIRECT_URL = "frontend:login"
# Self-signup is off: accounts are created by an admin (``manage.py createuser``/admin pages).
TANDEM_SELF_SIGNUP = False
# Who may create projects (in the app and through POST /api/projects/): "staff" (platform
# staff only, the default: a project is a place where others' work lands) or "everyone"
# (any signed-in account; its creator becomes the project's admin).
TANDEM_PROJECT_CREATORS = os.environ.get("TANDEM_PROJECT_CREATORS", "staff")
if TANDEM_PROJECT_CREATORS not in ("staff", "everyone"):
    raise ImproperlyConfigured("TANDEM_PROJECT_CREATORS must be 'staff' or 'everyone'")

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
MEDIA_ROOT = VAR_DIR / "media"
TANDEM_ARTIFACT_ROOT = Path(os.environ.get("TANDEM_ARTIFACT_ROOT", VAR_DIR / "artifacts"))
TANDEM_MODEL_CACHE = Path(os.environ.get("TANDEM_MODEL_CACHE", VAR_DIR / "models"))
# Export bundles of model versions (models_registry.bundles). Keep it outside every model root
# (TANDEM_MODEL_ROOTS): a bundle there could be registered into another project over HTTP.
TANDEM_BUNDLE_ROOT = Path(os.environ.get("TANDEM_BUNDLE_ROOT", VAR_DIR / "bundles"))

# Uploads: refuse oversized payloads early with a clear error instead of buffering them.
# How long a project invitation can be answered (annotation.invitations).
TANDEM_INVITATION_DAYS = int(os.environ.get("TANDEM_INVITATION_DAYS", 14))
TANDEM_MAX_IMPORT_BYTES = int(os.environ.get("TANDEM_MAX_IMPORT_BYTES", 200 * 1024 * 1024))
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        # Hashed, scoped, expiring tokens (annotation/tokens.py); DRF's plaintext authtoken is gone.
        "annotation.authentication.ApiTokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON that no database stores (lone surrogates, 64-bit overflow, deep nesting) is a 400.
    "DEFAULT_PARSER_CLASSES": [
        "config.api.CheckedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "config.api.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Tandem API",
    "DESCRIPTION": "Human feedback, datasets, training runs and model review in one loop.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Choice sets that share a field name ("kind", "status") or appear under several names,
    # named here so the schema is stable and `check --deploy` (fails on warnings) stays clean.
    "ENUM_NAME_OVERRIDES": {
        "ImportKindEnum": "annotation.importers.IMPORT_KINDS",
        "TaskKindEnum": "annotation.models.TaskKind",
        "TaskKindValuesEnum": "annotation.models.TASK_KIND_VALUES",
        "VersionKindEnum": "models_registry.models.VersionKind",
        "SnapshotStatusEnum": "rlhf.models.SnapshotStatus",
        "GenerationJobStatusEnum": "models_registry.models.JobStatus",
        "RunStatusEnum": "rlhf.models.RunStatus",
        "ProjectRoleEnum": "annotation.roles.ROLE_VALUES",
        "ProposalKindEnum": "annotation.models.ProposalKind",
        "SealableTextEnum": "annotation.services.sealing.SEALABLE_TEXTS",
    },
}

REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # redis-py 8 reads with a 5 s socket timeout by default, which breaks the channel
            # layer's blocking receive (channels_redis issue 422): wait without one.
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": None}]},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# Django's tasks API (DEP 14) through the django-tasks backport; the database backend is
# durable and lets any number of workers (``manage.py db_worker``) share one database.
TASKS = {
    "default": {
        "BACKEND": os.environ.get("TANDEM_TASKS_BACKEND", "django_tasks_db.DatabaseBackend"),
        "QUEUES": ["default", "training", "generation", "snapshots"],
    }
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("TANDEM_LOG_LEVEL", "WARNING")},
}

# Annotation defaults (a project may override its own).
TANDEM_DEFAULT_LEASE_SECONDS = 600
# A quality refresh marked waiting for longer than this is presumed lost (its job never ran):
# the next request enqueues another one. Seconds; a refresh normally starts within a few.
TANDEM_QUALITY_REFRESH_STALE_SECONDS = float(
    os.environ.get("TANDEM_QUALITY_REFRESH_STALE_SECONDS", 600)
)
TANDEM_MAX_ACTIVE_LEASES_PER_ANNOTATOR = 2
# Periodic jobs (annotation.periodic): each ``manage.py worker`` looks every tick for due jobs.
TANDEM_PERIODIC_TICK_SECONDS = float(os.environ.get("TANDEM_PERIODIC_TICK_SECONDS", 60))
TANDEM_RETENTION_EVERY_SECONDS = float(os.environ.get("TANDEM_RETENTION_EVERY_SECONDS", 86_400))
# An annotator may undo their last submit or skip for this long (annotation.services.task_undo),
# and never past the project's label edit window. Seconds.
TANDEM_UNDO_SECONDS = int(os.environ.get("TANDEM_UNDO_SECONDS", 120))

if os.environ.get("TANDEM_ENV") == "production":
    from config.production import *  # noqa: F403  (hardened overrides, validated)

# Encryption at rest of sensitive fields (config.fieldcrypt): comma-separated Fernet keys, the
# first encrypts, all decrypt (rotation: docs/security.md). Required in production; elsewhere
# a key derived from SECRET_KEY is used, with a warning.
TANDEM_FIELD_KEYS = field_keys_from_environment(
    secret_key=SECRET_KEY,
    production=os.environ.get("TANDEM_ENV") == "production",
)

# Dataset snapshots: worker processes per build (0 = in the job's own process).
TANDEM_SNAPSHOT_WORKERS = int(
    os.environ.get("TANDEM_SNAPSHOT_WORKERS", min(2, os.cpu_count() or 1))
)

# A model folder registered or named by a run is refused, before any file is hashed, when it
# holds more entries or bytes than these (a 70B model in bf16 is ~140 GB in a few dozen files).
TANDEM_MODEL_FOLDER_MAX_FILES = int(os.environ.get("TANDEM_MODEL_FOLDER_MAX_FILES", 10_000))
TANDEM_MODEL_FOLDER_MAX_BYTES = int(os.environ.get("TANDEM_MODEL_FOLDER_MAX_BYTES", 512 * 1024**3))
# Training runs (rlhf.runs.services, rlhf.runs.execution). A worker heartbeats every
# HEARTBEAT seconds; a running attempt silent for STALE seconds is presumed dead, and its run
# is re-queued to resume from its last checkpoint.
TANDEM_RUN_HEARTBEAT_SECONDS = float(os.environ.get("TANDEM_RUN_HEARTBEAT_SECONDS", 5))
TANDEM_RUN_STALE_SECONDS = float(os.environ.get("TANDEM_RUN_STALE_SECONDS", 60))
TANDEM_RUN_FLUSH_SECONDS = float(os.environ.get("TANDEM_RUN_FLUSH_SECONDS", 1))
TANDEM_RUN_POLL_SECONDS = float(os.environ.get("TANDEM_RUN_POLL_SECONDS", 2))
# The one list of folders a user may name a model folder from: a model registered over HTTP
# and a run's base, reward, reference or value model (config.safepaths.allowed_model_folder;
# safetensors only, remote code never runs). os.pathsep-separated.
# Deprecated: TANDEM_MODEL_IMPORT_ROOTS, the registry's former list, is still read when set
# (its folders are added to these) and will be dropped; set TANDEM_MODEL_ROOTS instead.
TANDEM_MODEL_ROOTS = [
    Path(p)
    for p in (
        os.environ.get(
            "TANDEM_MODEL_ROOTS", f"{TANDEM_MODEL_CACHE}{os.pathsep}{TANDEM_ARTIFACT_ROOT}"
        ).split(os.pathsep)
        + os.environ.get("TANDEM_MODEL_IMPORT_ROOTS", "").split(os.pathsep)
    )
    if p
]
