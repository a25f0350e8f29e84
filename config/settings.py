"""Settings of the demo marketplace, driven by the environment.

Every value a deployment changes comes from an environment variable; the defaults
are for development on one machine (embedded PostgreSQL, DEBUG on, the demo model).
"""

import json
import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from config.embedded_postgres import default_data_dir

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean; use 1/0, true/false, yes/no or on/off.")


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG", True)

SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_q",
    "sorl.thumbnail",
    "moderation",
    "catalog",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

if not DEBUG:
    # With DEBUG off, runserver and the WSGI app serve the collected static files
    # through WhiteNoise (run `manage.py collectstatic` once per deploy).
    MIDDLEWARE.insert(1, "whitenoise.middleware.WhiteNoiseMiddleware")

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

# DATABASE_URL points at an external PostgreSQL with pgvector. Unset, an embedded
# PostgreSQL 18 + pgvector is started on the first connection (config/embedded_postgres).
if os.environ.get("DATABASE_URL"):
    DATABASES = {"default": dj_database_url.parse(os.environ["DATABASE_URL"], conn_max_age=60)}
    if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        raise ImproperlyConfigured(
            "DATABASE_URL must point at PostgreSQL with the pgvector extension (postgres://...); "
            "other databases cannot store or search vectors."
        )
else:
    DATABASES = {
        "default": {
            "ENGINE": "config.embedded_postgres",
            "NAME": os.environ.get("EMBEDDED_PG_DATABASE", "marketplace"),
            "OPTIONS": {"data_dir": str(default_data_dir())},
            "CONN_MAX_AGE": 60,
        }
    }
# DATABASE_REPLICA_URL points at a read replica of DATABASE_URL's server: search reads
# from it (MODERATION["SEARCH_DATABASE"]), everything else uses the primary.
if os.environ.get("DATABASE_REPLICA_URL"):
    DATABASES["replica"] = dj_database_url.parse(os.environ["DATABASE_REPLICA_URL"], conn_max_age=60)
    DATABASES["replica"]["TEST"] = {"MIRROR": "default"}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", BASE_DIR / "var" / "static"))
MEDIA_URL = "media/"
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", BASE_DIR / "var" / "media"))
# Media is served by Django only when SERVE_MEDIA is on (the demo). A real site serves media from its
# web server or object storage.
SERVE_MEDIA = env_bool("SERVE_MEDIA", DEBUG)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
# CACHE_URL points every web process at one Redis cache, so that API throttle counters
# (and anything else cached) are shared; unset, each process counts on its own.
if os.environ.get("CACHE_URL"):
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": os.environ["CACHE_URL"]}
    }
# A marketplace photo is a few MB at most; larger uploads are refused with 413/400.
DATA_UPLOAD_MAX_MEMORY_SIZE = 12 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 12 * 1024 * 1024

# The task queue. The ORM broker (the same PostgreSQL) is the default: it re-delivers
# a task whose worker died. Set Q_REDIS_URL to use Redis instead. `retry` must exceed
# `timeout`, or a slow task is delivered twice while it is still running.
# `max_attempts` stops the re-delivery of a task that keeps raising: django-q2 counts the
# failures its workers report. A worker killed mid-task reports nothing; moderation
# counts those attempts on the object itself (docs/pipeline.md, "Errors and retries").
Q_CLUSTER = {
    "name": os.environ.get("Q_CLUSTER_NAME", "moderation"),
    "workers": int(os.environ.get("Q_WORKERS", 2)),
    "timeout": int(os.environ.get("Q_TIMEOUT", 120)),
    "retry": int(os.environ.get("Q_RETRY", 180)),
    "max_attempts": 5,
    "queue_limit": 50,
    "bulk": 10,
    "poll": 0.2,
    "catch_up": False,
    "label": "Task queue",
    # django-q2 logs two INFO lines per task ("Enqueued", "Processed"): noise next to the
    # objects' own states. Q_LOG_LEVEL=INFO brings them back.
    "log_level": os.environ.get("Q_LOG_LEVEL", "WARNING"),
}
if os.environ.get("Q_REDIS_URL"):
    Q_CLUSTER["redis"] = os.environ["Q_REDIS_URL"]
else:
    Q_CLUSTER["orm"] = "default"

# Moderation. The demo site uses the colour-words demo model, built by `make demo`
# into var/models/colour-words, with thresholds on that model's scale. Set
# MODERATION_SETTINGS to a JSON object to replace this dict whole, e.g. with a real
# CLIP model and thresholds for it (see docs/embedders.md and docs/pipeline.md).
DEMO_MODEL_DIR = BASE_DIR / "var" / "models" / "colour-words"
MODERATION = (
    json.loads(os.environ["MODERATION_SETTINGS"])
    if os.environ.get("MODERATION_SETTINGS")
    else {
        "EMBEDDER": {
            "BACKEND": "moderation.embedders.onnx_clip.OnnxClipEmbedder",
            "OPTIONS": {"model_dir": str(DEMO_MODEL_DIR), "threads": 1},
        },
        # The demo model's scale: agreeing pairs score about 0.9, colour clashes below 0.45.
        "THRESHOLDS": {
            "CONSISTENCY_MIN": 0.5,
            "CATEGORY_MAX_RANK": 3,
            "DUPLICATE_MIN_SIMILARITY": 0.95,
            "PHASH_MAX_DISTANCE": 6,
        },
    }
)
if "replica" in DATABASES:
    MODERATION.setdefault("SEARCH_DATABASE", "replica")

# The app's API views set their own error handler, parsers, pagination and throttles
# (moderation.api.views.ModerationAPIMixin), as they do on any host; the demo adds its
# authentication, the rates from the environment (the app's defaults otherwise:
# moderation.api.throttling.DEFAULT_RATES) and drf-spectacular's schema.
# Mail (the demo's receiver e-mails a seller whose listing is rejected: catalog/receivers.py).
# EMAIL_BACKEND names Django's backend; the demo's default prints each message on the
# console of the process that sent it (the web server for a moderator's decision).
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "moderation@localhost")

REST_FRAMEWORK = {
    # DRF's own, refusing credentials that PostgreSQL cannot hold (a NUL) instead of a 500.
    # Tokens first: apps' requests cost a lookup, not a password hash, and a request
    # without credentials is a 401 with `WWW-Authenticate: Token` (moderation.api.authentication).
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "moderation.api.authentication.TokenAuthentication",
        "moderation.api.authentication.SessionAuthentication",
        "moderation.api.authentication.BasicAuthentication",
    ],
    "DEFAULT_THROTTLE_RATES": {
        scope: os.environ[variable]
        for scope, variable in (
            ("uploads", "THROTTLE_UPLOADS"),
            ("search", "THROTTLE_SEARCH"),
            ("login", "THROTTLE_LOGIN"),
        )
        if os.environ.get(variable)
    },
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Listing moderation API",
    "DESCRIPTION": "Sellers' listings, similar-item search (by listing, text, photo, hybrid) and the moderators' "
    'queue. Errors share one body: {"error": {"status", "code", "message", "fields"}}.',
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "moderation.api.schema.document_errors",
    ],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "moderation": {"handlers": ["console"], "level": os.environ.get("MODERATION_LOG_LEVEL", "INFO")},
    },
}
