"""Project settings. Everything comes from the environment, with a working default for each value.

Every variable read here is documented in README.md's configuration table.
"""

import secrets
import warnings
from datetime import timedelta
from pathlib import Path

import environ

from photobooth import metrics_settings

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

# --- Local data folder -------------------------------------------------------------------------
# Holds the SQLite database, media files and the generated development secret key.
DATA_DIR = Path(env.str("PHOTOBOOTH_DATA_DIR", default=str(BASE_DIR / "var"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _development_secret_key() -> str:
    """A secret key generated once and kept in the data folder, for installs that set none."""
    key_file = DATA_DIR / "secret_key"
    if not key_file.exists():
        key_file.touch(mode=0o600)
        key_file.write_text(secrets.token_urlsafe(50))
    return key_file.read_text().strip()


# --- Core --------------------------------------------------------------------------------------
SECRET_KEY = env.str("SECRET_KEY", default="") or _development_secret_key()
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["*"])

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_prometheus",
    "accounts.apps.AccountsConfig",
    "providers.apps.ProvidersConfig",
    "jobqueue.apps.JobQueueConfig",
    "ingest.apps.IngestConfig",
    "api.apps.ApiConfig",
    "adminui.apps.AdminUIConfig",
    "galleries.apps.GalleriesConfig",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Static files (API docs page, dashboard) served by the app itself, compressed and cached.
    "photobooth.static_files.StaticFilesMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "photobooth.security.SecurityHeadersMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

# --- HTTPS (behind a TLS-terminating proxy such as nginx) ---------------------------------------
# HTTPS=true: cookies only over HTTPS, HSTS, and the proxy's X-Forwarded-Proto is trusted (only
# set this when the proxy overwrites that header; see Docs/deployment.md).
HTTPS = env.bool("HTTPS", default=False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = HTTPS
SESSION_COOKIE_HTTPONLY = True
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if HTTPS else None
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000 if HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=HTTPS)
# Plain-HTTP requests that reach the app are redirected, except probes from inside.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=HTTPS)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
# HSTS preload is a registration an operator makes for their domain, not a server setting.
SILENCED_SYSTEM_CHECKS = ["security.W021"]
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

ROOT_URLCONF = "photobooth.urls"
ASGI_APPLICATION = "photobooth.asgi.application"
WSGI_APPLICATION = "photobooth.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "adminui.access.user_scopes",
            ],
        },
    },
]

# --- Database ----------------------------------------------------------------------------------
DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'db.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers work while a writer commits; IMMEDIATE transactions take the write lock at
    # BEGIN, which makes the queue's acquire an atomic compare-and-set across processes; the busy
    # timeout makes a second writer wait instead of failing at once.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": (
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=20000;"
        ),
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A small pool per process (psycopg_pool, Django's "pool" option). Code returns its
    # connection as soon as it is done with the database (connection.close()), so hundreds of
    # waiting requests and running jobs share a handful of connections.
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": env.int("DATABASE_POOL_SIZE", default=10),
        "timeout": env.float("DATABASE_POOL_TIMEOUT", default=1.5),
    }
    # A pooled connection broken by a database restart is replaced, not handed out.
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DATABASES["default"]["CONN_MAX_AGE"] = 0  # the pool keeps connections; Django must not
# Request steps that use the database (accepting an upload, reading a result) running at once in
# one web process; the rest wait as coroutines. Below the pool size, so they never starve it.
WEB_CONCURRENT_DB_STEPS = env.int(
    "WEB_CONCURRENT_DB_STEPS", default=max(1, env.int("DATABASE_POOL_SIZE", default=10) - 2)
)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Auth --------------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

# --- Internationalisation ------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

# --- Files -------------------------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
# Static files are found in the apps at run time: no collectstatic step is needed to start.
WHITENOISE_USE_FINDERS = True
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(DATA_DIR / "media"))).resolve()
MEDIA_URL = "/media-files/"  # never served directly: results and media go through our views
FILE_UPLOAD_PERMISSIONS = 0o600
# Uploads larger than FILE_UPLOAD_MAX_MEMORY_SIZE (2.5 MB) are spooled to a temporary file. It
# lives beside the stored files so that keeping a photo is a rename, not a copy.
FILE_UPLOAD_TEMP_DIR = MEDIA_ROOT / "incoming"
FILE_UPLOAD_TEMP_DIR.mkdir(parents=True, exist_ok=True)

# --- Ingest ------------------------------------------------------------------------------------
# Largest accepted photo. The request body may exceed it only by the multipart overhead below.
INGEST_MAX_UPLOAD_BYTES = env.int("INGEST_MAX_UPLOAD_BYTES", default=15 * 1024 * 1024)
INGEST_MAX_FORM_OVERHEAD_BYTES = 256 * 1024
# An upload's body must arrive within this many seconds of its headers (else 408): stalled or
# trickling clients do not hold connections for ever.
INGEST_BODY_TIMEOUT_SECONDS = env.float("INGEST_BODY_TIMEOUT_SECONDS", default=60.0)
# Largest accepted image in pixels (width x height): refuses decompression bombs before decoding.
INGEST_MAX_IMAGE_PIXELS = env.int("INGEST_MAX_IMAGE_PIXELS", default=120_000_000)
# How an upload is checked before its job is queued: "decode" reads every byte of image data
# (finds corrupt data inside the file; about 7 ms per MB of JPEG here), "structure" checks the
# headers, dimensions and the end of the file only (truncation), leaving the rest to the provider.
INGEST_IMAGE_CHECK = env.str("INGEST_IMAGE_CHECK", default="decode")
if INGEST_IMAGE_CHECK not in ("decode", "structure"):
    raise ValueError("INGEST_IMAGE_CHECK must be 'decode' or 'structure'")
# Back-pressure: unfinished jobs allowed per slot and in total before ingest answers 429.
INGEST_MAX_UNFINISHED_PER_SLOT = env.int("INGEST_MAX_UNFINISHED_PER_SLOT", default=20)
INGEST_MAX_UNFINISHED_TOTAL = env.int("INGEST_MAX_UNFINISHED_TOTAL", default=200)
INGEST_RETRY_AFTER_SECONDS = env.int("INGEST_RETRY_AFTER_SECONDS", default=5)
# Refuse uploads (503) while no worker is alive, instead of holding the booth until the deadline.
INGEST_REQUIRE_LIVE_WORKER = env.bool("INGEST_REQUIRE_LIVE_WORKER", default=True)
# Brute force: a client address with this many refused ingest passwords within the window gets
# 429 until the oldest of them leaves the window.
INGEST_MAX_PASSWORD_FAILURES_PER_ADDRESS = env.int(
    "INGEST_MAX_PASSWORD_FAILURES_PER_ADDRESS", default=20
)
INGEST_THROTTLE_WINDOW_SECONDS = env.int("INGEST_THROTTLE_WINDOW_SECONDS", default=900)
# How often a web process looks up the jobs its requests wait for: on SQLite, and on PostgreSQL
# while its notification listener is down.
INGEST_WAIT_POLL_SECONDS = env.float("INGEST_WAIT_POLL_SECONDS", default=0.1)
# On PostgreSQL waiting requests are woken by LISTEN/NOTIFY; this slower poll is the safety net.
INGEST_WAIT_LISTEN = env.bool("INGEST_WAIT_LISTEN", default=True)
INGEST_WAIT_FALLBACK_POLL_SECONDS = env.float("INGEST_WAIT_FALLBACK_POLL_SECONDS", default=1.0)

# The externally reachable origin used to build public links (ingest URL, temporary media).
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="http://127.0.0.1:8000")
# Results and temporary public copies are published without EXIF/GPS, XMP, IPTC and comments
# unless this is set.
PUBLISH_KEEP_METADATA = env.bool("PUBLISH_KEEP_METADATA", default=False)
# Dashboard forms posted from the public address pass the CSRF origin check behind a proxy.
CSRF_TRUSTED_ORIGINS = [PUBLIC_BASE_URL.rstrip("/")]

# --- Workers -----------------------------------------------------------------------------------
WORKER_CONCURRENCY = env.int("WORKER_CONCURRENCY", default=4)
WORKER_POLL_SECONDS = env.float("WORKER_POLL_SECONDS", default=0.2)
# How often run_workers finalizes jobs whose deadline passed while nobody was waiting for them
# and removes expired files.
WORKER_REAP_SECONDS = env.float("WORKER_REAP_SECONDS", default=5.0)
# Finished jobs and their processing logs (the statistics' source) are kept this many days.
JOB_HISTORY_DAYS = env.int("JOB_HISTORY_DAYS", default=90)
# How often run_workers looks for orphaned files (left by a process killed mid-write).
WORKER_ORPHAN_SWEEP_SECONDS = env.float("WORKER_ORPHAN_SWEEP_SECONDS", default=600.0)
# A worker holds each job under a lease it renews every heartbeat; a job whose lease lapsed
# (worker killed, machine gone) is taken over by another worker. Takeover happens within
# WORKER_LEASE_SECONDS + WORKER_POLL_SECONDS of the last renewal.
WORKER_LEASE_SECONDS = env.float("WORKER_LEASE_SECONDS", default=8.0)
WORKER_HEARTBEAT_SECONDS = env.float("WORKER_HEARTBEAT_SECONDS", default=2.0)
# Ingest answers 503 at once when no worker has sent a heartbeat for this long.
WORKER_STALE_SECONDS = env.float("WORKER_STALE_SECONDS", default=10.0)
# After SIGTERM, running jobs get this long to finish; the rest go back to the queue.
WORKER_SHUTDOWN_GRACE_SECONDS = env.float("WORKER_SHUTDOWN_GRACE_SECONDS", default=30.0)
# Caps on jobs processing at once across all worker processes: per provider ("gemini=8,…")
# and in total (0 = no cap).
PROVIDER_CONCURRENCY = {
    name: int(value) for name, value in env.dict("PROVIDER_CONCURRENCY", default={}).items()
}
WORKER_GLOBAL_CONCURRENCY = env.int("WORKER_GLOBAL_CONCURRENCY", default=0)
# Retries of retryable provider errors (429/5xx-like), with exponential backoff, never past the
# job's deadline.
PROVIDER_MAX_RETRIES = env.int("PROVIDER_MAX_RETRIES", default=2)
PROVIDER_RETRY_BACKOFF_SECONDS = env.float("PROVIDER_RETRY_BACKOFF_SECONDS", default=1.0)

# --- Metrics (Docs/metrics.md) -----------------------------------------------------------------
METRICS_ALLOWED_NETWORKS = metrics_settings.METRICS_ALLOWED_NETWORKS
METRICS_TOKEN = metrics_settings.METRICS_TOKEN
METRICS_DB_CACHE_SECONDS = metrics_settings.METRICS_DB_CACHE_SECONDS
METRICS_STORAGE_CACHE_SECONDS = metrics_settings.METRICS_STORAGE_CACHE_SECONDS
WORKER_METRICS_PORT = metrics_settings.WORKER_METRICS_PORT
WORKER_METRICS_HOST = metrics_settings.WORKER_METRICS_HOST

# --- First start (`manage.py bootstrap`, run by `make run`) ------------------------------------
# Used only when no admin account / no ingest password exists yet; empty means "generate one".
BOOTSTRAP_ADMIN_USERNAME = env.str("ADMIN_USERNAME", default="admin")
BOOTSTRAP_ADMIN_PASSWORD = env.str("ADMIN_PASSWORD", default="")
BOOTSTRAP_INGEST_PASSWORD = env.str("INGEST_PASSWORD", default="")

# --- Web server (`manage.py serve`, run by `make run`) -------------------------------------------
SERVE_HOST = env.str("HOST", default="127.0.0.1")
SERVE_PORT = env.int("PORT", default=8000)

# --- Dashboard (Django sessions) -----------------------------------------------------------------
LOGIN_URL = "dashboard-login"
LOGIN_REDIRECT_URL = "dashboard-home"
SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE_SECONDS", default=12 * 3600)

# --- Admin API (DRF + simplejwt) -----------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework_simplejwt.authentication.JWTAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["api.permissions.HasScope"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "rest_framework.parsers.JSONParser",
        "rest_framework.parsers.MultiPartParser",
        "rest_framework.parsers.FormParser",
    ],
    "EXCEPTION_HANDLER": "api.exceptions.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}
# Tokens are signed (HS256) with JWT_SIGNING_KEY, or SECRET_KEY when it is not set.
SIMPLE_JWT = {
    "ALGORITHM": "HS256",
    "SIGNING_KEY": env.str("JWT_SIGNING_KEY", default="") or SECRET_KEY,
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env.int("JWT_ACCESS_TOKEN_MINUTES", default=30)),
    "AUTH_HEADER_TYPES": ("Bearer",),
    "UPDATE_LAST_LOGIN": False,
    "TOKEN_OBTAIN_SERIALIZER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Photobooth AI server — admin API",
    "DESCRIPTION": "Slots, settings, templates, jobs and statistics. Log in with POST /api/login "
    "and send the token as `Authorization: Bearer <token>`.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {},
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "api.schema.add_common_errors",
    ],
}
# Brute-force limits on admin logins (API and dashboard), counted in the audit log.
LOGIN_THROTTLE_WINDOW_SECONDS = env.int("LOGIN_THROTTLE_WINDOW_SECONDS", default=900)
LOGIN_MAX_FAILURES_PER_USERNAME = env.int("LOGIN_MAX_FAILURES_PER_USERNAME", default=5)
LOGIN_MAX_FAILURES_PER_ADDRESS = env.int("LOGIN_MAX_FAILURES_PER_ADDRESS", default=20)

# --- Providers ---------------------------------------------------------------------------------
# Adapters available to slots. PHOTOBOOTH_EXTRA_PROVIDERS adds more by dotted path (plug-ins).
PHOTOBOOTH_PROVIDERS = [
    "providers.local.LocalProvider",
    "providers.gemini.GeminiProvider",
    "providers.turbotext.TurbotextProvider",
    "providers.openai.OpenAIProvider",
    *env.list("PHOTOBOOTH_EXTRA_PROVIDERS", default=[]),
]

# Where each provider is reached. Defaults are the real endpoints; tests point them at fakes.
PROVIDER_BASE_URLS = {
    "gemini": env.str("GEMINI_BASE_URL", default="https://generativelanguage.googleapis.com"),
    "turbotext": env.str("TURBOTEXT_BASE_URL", default="https://www.turbotext.ru"),
    "openai": env.str("OPENAI_BASE_URL", default="https://api.openai.com"),
}
# API keys from the environment: the fallback when none was set through the settings API.
PROVIDER_API_KEYS = {
    "gemini": env.str("GEMINI_API_KEY", default=""),
    "turbotext": env.str("TURBOTEXT_API_KEY", default=""),
    "openai": env.str("OPENAI_API_KEY", default=""),
}
# Keys that encrypt provider API keys at rest (Fernet keys, comma-separated). The first one
# encrypts; all of them decrypt, so a key is rotated by putting a new one first and running
# `manage.py rotate_secrets`. Empty: a key derived from SECRET_KEY (fine for development only).
SECRETS_ENCRYPTION_KEYS = env.list("SECRETS_ENCRYPTION_KEYS", default=[])
# Turbotext answers asynchronously: how often its result is asked for.
TURBOTEXT_POLL_SECONDS = env.float("TURBOTEXT_POLL_SECONDS", default=2.5)

# Under ASGI Django serves a response with a synchronous iterator (FileResponse of a result,
# at most INGEST_MAX_UPLOAD_BYTES-sized) by reading it whole in a worker thread, and warns each
# time; for those files that is intended, so the warning is noise. Anything large must stream
# through an async iterator instead (the results archive does: jobqueue/archives.py, tested).
warnings.filterwarnings(
    "ignore", message="StreamingHttpResponse must consume synchronous iterators"
)

# --- Logging -----------------------------------------------------------------------------------
# LOG_FORMAT (json, or plain when DEBUG) and LOG_LEVEL (INFO): see photobooth/logging_config.py.
from photobooth.logging_config import logging_config  # noqa: E402

LOGGING = logging_config(debug=DEBUG)
