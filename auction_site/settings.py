"""Settings for the auction site, read from the environment.

Every setting has a working development default: with nothing set the
project runs on SQLite and an in-process fan-out in one process.
`DATABASE_URL` and `REDIS_URL` move it to PostgreSQL and Redis.
"""

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# A variable set but empty (`FOO=` in a compose file or .env) means "not set": the default applies.
env.ENVIRON = {name: value for name, value in os.environ.items() if value.strip()}
# A value beginning with `$` names another variable (django-environ's proxy); `\$` is a literal `$`.
env.escape_proxy = True


# --- Core -------------------------------------------------------------------

DEBUG = env.bool("DEBUG", True)

SECRET_KEY = env.str("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY must be set when DEBUG is off. (A value beginning with `$` names another variable: "
            "write `\\$` for a literal `$`.)"
        )
    SECRET_KEY = "django-insecure-development-only-key-do-not-use-in-production"

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", str.strip, ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", str.strip, [])

# --- HTTPS ------------------------------------------------------------------
# HTTPS: clients reach the site over HTTPS (directly, or through a proxy that
# terminates TLS). It sets the defaults below; `manage.py serve_prod` and a
# local trial of the compose stack turn it off to serve plain HTTP.

HTTPS = env.bool("HTTPS", not DEBUG)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", HTTPS)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env.bool("SECURE_COOKIES", HTTPS)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", 31_536_000 if HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", HTTPS)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", HTTPS)
# Only behind a proxy that sets X-Forwarded-Proto itself (never passes a
# client's): the proxy tells Django that the client used HTTPS.
if env.bool("SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "corsheaders",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "ops",
    "auction_site",
    "accounts",
    "lots",
    "bids",
    "realtime",
]

MIDDLEWARE = [
    "ops.middleware.RequestLogMiddleware",
    "ops.middleware.ProbeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "auction_site.urls"
ASGI_APPLICATION = "auction_site.asgi.application"
WSGI_APPLICATION = None

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
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------
# SQLite by default: WAL lets readers run beside the writer, and IMMEDIATE
# transactions take the write lock up front so concurrent writers wait
# (busy timeout) instead of failing with "database is locked" on upgrade.

SQLITE_PATH = env.str("SQLITE_PATH", str(BASE_DIR / "db.sqlite3"))
SQLITE_DEFAULT = {
    "ENGINE": "django.db.backends.sqlite3",
    "NAME": SQLITE_PATH,
    "OPTIONS": {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    },
    # Tests get a file too, not Django's shared-cache in-memory database: its
    # table locks fail at once ("database table is locked") where a file
    # waits, and the clock's thread writes beside the test's.
    "TEST": {"NAME": f"{SQLITE_PATH}-test"},
}

DATABASE_URL = env.str("DATABASE_URL", "")
if DATABASE_URL:
    default_db = dj_database_url.parse(DATABASE_URL)
    if default_db["ENGINE"] == "django.db.backends.postgresql":
        # Django's psycopg 3 pool: connections are reused across requests and
        # consumer calls; CONN_MAX_AGE must stay 0 when the pool is on.
        default_db["CONN_MAX_AGE"] = 0
        # The pool checks a connection before handing it out, so connections
        # that died with a PostgreSQL restart or failover are replaced unseen.
        default_db["CONN_HEALTH_CHECKS"] = env.bool("DATABASE_HEALTH_CHECKS", True)
        default_db.setdefault("OPTIONS", {})["pool"] = {
            "min_size": env.int("DATABASE_POOL_MIN", 2),
            "max_size": env.int("DATABASE_POOL_MAX", 20),
            "timeout": env.int("DATABASE_POOL_TIMEOUT", 10),
            # psycopg_pool retries a lost connection after 1, 2, 4, 8... seconds with no
            # cap until this gives up (default 300 s): after a long outage, the next try
            # came as late as the outage was long. Giving up early starts a fresh try
            # (after 1 s) on the next request, so recovery stays within seconds.
            "reconnect_timeout": env.int("DATABASE_POOL_RECONNECT_TIMEOUT", 10),
        }
        # psycopg prepares a statement once it has run 5 times on a connection. Only a bid's statements
        # bind server-side (bids/statements.py), so only they are prepared: their planning took longer
        # than their run. Off for a pooler that cannot keep prepared statements (PgBouncer before 1.21).
        if env.bool("DATABASE_PREPARED_STATEMENTS", True):
            default_db["OPTIONS"]["prepare_threshold"] = 5
    DATABASES = {"default": default_db}
else:
    DATABASES = {"default": SQLITE_DEFAULT}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Channels and cache -----------------------------------------------------

REDIS_URL = env.str("REDIS_URL", "")
if REDIS_URL:
    # Shared by every process: WebSocket tickets and throttles.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "auction",
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Auth -------------------------------------------------------------------

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = ["accounts.backends.UsernameOrEmailBackend"]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

SIMPLE_JWT = {
    # JWT_ACCESS_SECONDS, when set, wins (tests use a few seconds).
    "ACCESS_TOKEN_LIFETIME": timedelta(seconds=env.int("JWT_ACCESS_SECONDS", 60 * env.int("JWT_ACCESS_MINUTES", 10))),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env.int("JWT_REFRESH_DAYS", 7)),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": True,
    # Tokens carry a hash of the password: changing it ends every session at once.
    "CHECK_REVOKE_TOKEN": True,
    "SIGNING_KEY": env.str("JWT_SIGNING_KEY", SECRET_KEY),
}

# Browser front ends may keep the tokens in HttpOnly cookies instead.
JWT_ACCESS_COOKIE = "access_token"
JWT_REFRESH_COOKIE = "refresh_token"
JWT_COOKIE_SECURE = env.bool("JWT_COOKIE_SECURE", SESSION_COOKIE_SECURE)
JWT_COOKIE_SAMESITE = env.str("JWT_COOKIE_SAMESITE", "Lax")
# Beside them, readable by scripts and holding no secret: a page asks who is
# logged in only when it is set, so a visitor's page load makes no request that fails.
JWT_HINT_COOKIE = "signed_in"

# A WebSocket ticket is single-use and short-lived, so no long-lived token
# has to travel in a URL.
WS_TICKET_TTL_SECONDS = env.int("WS_TICKET_TTL_SECONDS", 30)

PASSWORD_RESET_TIMEOUT = env.int("PASSWORD_RESET_TIMEOUT", 3600)

# Throttles of the ways in (accounts/throttling.py), counted in the cache (with
# Redis, across processes): "N/second|minute|hour|day", or e.g. "10/15m".
# Per client address, log-ins (REST, cookie, admin and browsable-API forms) and registrations together:
THROTTLE_AUTH = env.str("THROTTLE_AUTH", "30/minute")
# Per account named (username or e-mail address), from any address:
THROTTLE_LOGIN_ACCOUNT = env.str("THROTTLE_LOGIN_ACCOUNT", "10/15m")
# Password-reset e-mails, per client address and per e-mail address:
THROTTLE_PASSWORD_RESET = env.str("THROTTLE_PASSWORD_RESET", "5/hour")

# --- Cross-origin front ends ------------------------------------------------

CORS_ALLOWED_ORIGINS = env.list("CORS_ALLOWED_ORIGINS", str.strip, [])
CORS_ALLOW_CREDENTIALS = True
CORS_ALLOW_HEADERS = (
    "accept",
    "authorization",
    "content-type",
    "idempotency-key",
    "origin",
    "x-csrftoken",
    "x-requested-with",
)
# Browsers may open the WebSocket from these origins, besides ALLOWED_HOSTS.
WEBSOCKET_ALLOWED_ORIGINS = env.list("WEBSOCKET_ALLOWED_ORIGINS", str.strip, CORS_ALLOWED_ORIGINS)

# --- REST framework -----------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework_simplejwt.authentication.JWTAuthentication",
        "accounts.authentication.CookieJWTAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticatedOrReadOnly"],
    "DEFAULT_PARSER_CLASSES": [
        "ops.parsers.JSONParser",  # DRF's, with too-deep nesting a 400 `parse_error`
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.SearchFilter",
        "ops.filters.StrictOrderingFilter",  # an unknown field is a 400, not ignored
    ],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 20,
    "COERCE_DECIMAL_TO_STRING": True,
    "DEFAULT_SCHEMA_CLASS": "ops.openapi.ErrorAutoSchema",
    "EXCEPTION_HANDLER": "ops.exceptions.api_exception_handler",
    # OPTIONS on a list says what a POST takes, with each field's default (the seller's page reads the currencies).
    "DEFAULT_METADATA_CLASS": "ops.metadata.FieldDefaultsMetadata",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Auction API",
    "DESCRIPTION": "Real-time auctions: accounts, lots, bids. The WebSocket protocol is described in the README.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # ops/converters.py's row ids: longer ones answer 404 before any query.
    "PATH_CONVERTER_OVERRIDES": {"id": {"type": "integer", "minimum": 0, "maximum": 999_999_999_999_999_999}},
    # A lot's status is one enum wherever it appears (stored, or as read at request time).
    "ENUM_NAME_OVERRIDES": {"LotStatusEnum": "lots.models.LotStatus"},
}

# --- E-mail -----------------------------------------------------------------

# SMTP when EMAIL_HOST is set. Without it, the console in development, and
# files in EMAIL_FILE_PATH off DEBUG: never the console there, whose output goes
# to the logs with live password-reset links (the check auction_site.E001
# stops every command if EMAIL_BACKEND names it; W001, under `check --deploy`,
# says mail is only written to files).
CONSOLE_EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
FILE_EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
EMAIL_BACKEND = env.str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend"
    if "EMAIL_HOST" in env
    else (CONSOLE_EMAIL_BACKEND if DEBUG else FILE_EMAIL_BACKEND),
)
EMAIL_FILE_PATH = env.str("EMAIL_FILE_PATH", str(BASE_DIR / "sent-mail"))
EMAIL_HOST = env.str("EMAIL_HOST", "localhost")
EMAIL_PORT = env.int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", False)
# A mail server that stops answering fails a send after this long (it is retried later), never hangs the mailer.
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", 10)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", "auctions@localhost")
# Where links in e-mails (password reset, notifications) point: the front end's address.
# `manage.py serve` says at start-up where they point when it is not set.
FRONTEND_URL = env.str("FRONTEND_URL", "http://127.0.0.1:8000")
FRONTEND_URL_IS_DEFAULT = "FRONTEND_URL" not in env

# --- Internationalization, static and media files ---------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "static"]
# Off DEBUG, WhiteNoise serves what `collectstatic` wrote: hashed names
# (cached for a year) and compressed copies.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", str(BASE_DIR / "media")))
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
# The largest lot photo stored (deploy/nginx.conf refuses bodies over 6 MB before they reach Django).
LOT_IMAGE_MAX_BYTES = env.int("LOT_IMAGE_MAX_BYTES", 5 * 1024 * 1024)

# --- Auction rules ----------------------------------------------------------

AUCTION_DEFAULT_CURRENCY = env.str("AUCTION_DEFAULT_CURRENCY", "USD")
# The currencies (`AUCTION_CURRENCIES`) and the increment table (`AUCTION_BID_INCREMENTS`) are
# lots/pricing.py's; setting either here replaces it.
# Staff run the sale; by default they may not bid in it.
AUCTION_STAFF_CAN_BID = env.bool("AUCTION_STAFF_CAN_BID", False)
# How far soft close may push a lot's end when no hard end is given.
AUCTION_DEFAULT_MAX_EXTENSION = timedelta(seconds=env.int("AUCTION_DEFAULT_MAX_EXTENSION_SECONDS", 3600))

# Watchers get ENDING_SOON this long before a lot ends.
AUCTION_ENDING_SOON_SECONDS = env.int("AUCTION_ENDING_SOON_SECONDS", 300)
# Run the clock inside `manage.py serve` (the embedded default needs no
# second process); production may run `manage.py run_clock` instead, or both.
AUCTION_CLOCK_IN_PROCESS = env.bool("AUCTION_CLOCK_IN_PROCESS", True)
# The longest the clock sleeps without a due time or a wake-up.
AUCTION_CLOCK_MAX_SLEEP_SECONDS = env.float("AUCTION_CLOCK_MAX_SLEEP_SECONDS", 30.0)
# The mailer (it runs wherever a clock runs) looks for new notifications this
# often; those stored by its own process wake it at once.
AUCTION_MAIL_POLL_SECONDS = env.float("AUCTION_MAIL_POLL_SECONDS", 2.0)
# A failing e-mail is retried with backoff (30 s, 1 min, 2 min, ... 1 h) this many times in all.
AUCTION_MAIL_MAX_ATTEMPTS = env.int("AUCTION_MAIL_MAX_ATTEMPTS", 10)

# Lot chat: the longest message, and how many one user may send a minute.
CHAT_MAX_LENGTH = env.int("CHAT_MAX_LENGTH", 500)
CHAT_MESSAGES_PER_MINUTE = env.int("CHAT_MESSAGES_PER_MINUTE", 10)

# --- Real time --------------------------------------------------------------

WS_ANONYMOUS_CAN_WATCH = env.bool("WS_ANONYMOUS_CAN_WATCH", True)
WS_MAX_MESSAGE_BYTES = env.int("WS_MAX_MESSAGE_BYTES", 4096)
WS_MESSAGES_PER_SECOND = env.int("WS_MESSAGES_PER_SECOND", 20)
WS_MESSAGE_BURST = env.int("WS_MESSAGE_BURST", 40)
# Abuse limits (0 turns one off): open WebSockets per client address, and bids
# plus buy-nows per user per minute; both shared by every process through Redis.
WS_CONNECTIONS_PER_IP = env.int("WS_CONNECTIONS_PER_IP", 50)
BIDS_PER_MINUTE = env.int("BIDS_PER_MINUTE", 60)
# A reconnecting client gets at most this many missed events replayed;
# an older gap gets a fresh LOT_STATUS instead.
WS_REPLAY_LIMIT = env.int("WS_REPLAY_LIMIT", 500)
# A watcher that skips ahead waits this long for a late event before it
# reads the missing ones from the database.
WS_GAP_WAIT_SECONDS = env.float("WS_GAP_WAIT_SECONDS", 0.25)
# A process that stops renewing its heartbeat (killed, frozen) stops counting
# (watchers, sockets per address) this many seconds after its last renewal.
REALTIME_PROCESS_TTL_SECONDS = env.float("REALTIME_PROCESS_TTL_SECONDS", 45.0)
# Each open socket is pinged this often (daphne's keep-alive): keeps proxies and
# NATs from dropping a quiet socket, and finds the dead ones.
WS_PING_SECONDS = env.float("WS_PING_SECONDS", 60.0)
# A room hears its watcher count at most once per this many seconds.
WS_COUNT_INTERVAL_SECONDS = env.float("WS_COUNT_INTERVAL_SECONDS", 1.0)
# A client that stops reading: once this many bytes wait in the server's own
# send buffer (past the kernel's), the socket is closed with 4008.
WS_SEND_BUFFER_BYTES = env.int("WS_SEND_BUFFER_BYTES", 1024 * 1024)

# --- Operations ---------------------------------------------------------------

# /metrics answers direct requests from these addresses (or networks), and
# any request that sends `Authorization: Bearer <METRICS_TOKEN>`.
METRICS_ALLOWED_IPS = env.list("METRICS_ALLOWED_IPS", str.strip, ["127.0.0.1", "::1"])
METRICS_TOKEN = env.str("METRICS_TOKEN", "")

# --- Logging ----------------------------------------------------------------
# One JSON object a line off DEBUG (LOG_FORMAT=json|text), each with the
# request id; query strings, bearer tokens and JWTs are scrubbed.

LOG_FORMAT = env.str("LOG_FORMAT", "text" if DEBUG else "json")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "ops.logs.RequestIdFilter"},
        "warning_without_traceback": {"()": "ops.logs.WarningWithoutTraceback"},
    },
    "formatters": {
        "json": {"()": "ops.logs.JsonFormatter"},
        "text": {"()": "ops.logs.TextFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "text",
            "filters": ["request_id"],
        }
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
        # RequestLogMiddleware logs every request once, with its id.
        "django.request": {"level": "ERROR"},
        # A request naming a host not in ALLOWED_HOSTS (scanners do it all day): one line.
        "django.security.DisallowedHost": {"filters": ["warning_without_traceback"]},
    },
}
