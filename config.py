"""Settings of the reference deployment, read from the environment and an optional `.env` file.

Every key is documented in README.md ("Configuration"). Extension keys keep
their extensions' own names; flask_email_signin's keys start with `OTP_`.
Environment variables keep their deployment names (REDIS_URL feeds OTP_REDIS_URL).
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from dotenv import load_dotenv

BASE_DIR = Path(__file__).resolve().parent
load_dotenv(BASE_DIR / ".env")

# Development defaults. ProductionConfig refuses to start with any of these.
DEV_SECRET_KEY = "dev-secret-key-not-for-production-0123456789abcdef"
DEV_JWT_SECRET_KEY = "dev-jwt-secret-not-for-production-0123456789abcdef"


def env_str(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return default if value is None or value == "" else value


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return default if not value else int(value)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if not value:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


class Config:
    """Settings shared by every environment; defaults suit local development."""

    APP_ENV = "development"
    SECRET_KEY = env_str("SECRET_KEY", DEV_SECRET_KEY)
    MAX_CONTENT_LENGTH = env_int("MAX_CONTENT_LENGTH", 16 * 1024)

    # Unsafe settings refuse to start only in production (see flask_email_signin's guard).
    OTP_PRODUCTION = False
    OTP_KNOWN_DEV_SECRETS = (DEV_SECRET_KEY, DEV_JWT_SECRET_KEY)
    # This deployment is an API plus its pages: every error answers in the JSON envelope.
    OTP_JSON_ERRORS_APP_WIDE = True
    OTP_URL_PREFIX = env_str("OTP_URL_PREFIX", "/auth")
    # The sign-in page is this deployment's home page.
    OTP_SIGNIN_PAGE_AT_ROOT = True

    # State store (codes, cooldowns, sessions) and task broker.
    OTP_REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
    OTP_REDIS_SOCKET_TIMEOUT = float(env_str("REDIS_SOCKET_TIMEOUT", "1.0") or 1.0)
    OTP_REDIS_RETRY_SECONDS = float(env_str("REDIS_RETRY_SECONDS", "5.0") or 0)
    # Treat a plain redis:// REDIS_URL as a node of a Redis Cluster (or use redis+cluster://).
    OTP_REDIS_CLUSTER = env_bool("REDIS_CLUSTER", False)
    OTP_CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or OTP_REDIS_URL
    # Redis broker: seconds before a task whose worker died unacknowledged is handed out again.
    OTP_CELERY_VISIBILITY_TIMEOUT = env_int("CELERY_VISIBILITY_TIMEOUT", 300)

    # Per-IP rate limits; the storage defaults to REDIS_URL.
    OTP_RATE_LIMIT_ENABLED = env_bool("RATELIMIT_ENABLED", True)
    OTP_RATE_LIMIT_STORAGE_URI = env_str("RATELIMIT_STORAGE_URI")
    OTP_RATE_LIMIT_STRATEGY = env_str("RATELIMIT_STRATEGY", "fixed-window")
    # Proxies in front of the app that append to X-Forwarded-For; 0: the header is ignored.
    TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)

    SQLALCHEMY_DATABASE_URI = env_str(
        "DATABASE_URL", f"sqlite:///{BASE_DIR / 'instance' / 'app.db'}"
    )

    MAIL_SERVER = env_str("MAIL_SERVER", "127.0.0.1")
    MAIL_PORT = env_int("MAIL_PORT", 1025)
    MAIL_USE_TLS = env_bool("MAIL_USE_TLS", False)
    MAIL_USE_SSL = env_bool("MAIL_USE_SSL", False)
    MAIL_USERNAME = env_str("MAIL_USERNAME")
    MAIL_PASSWORD = env_str("MAIL_PASSWORD")
    MAIL_DEFAULT_SENDER = env_str("MAIL_DEFAULT_SENDER", "Sign-in <no-reply@localhost>")
    # Every SMTP wait of a send is bounded by this (the SMTP socket's own timeout).
    OTP_MAIL_TIMEOUT_SECONDS = env_int("MAIL_TIMEOUT_SECONDS", 30)
    # Flask-Mail would silently drop mail under TESTING; the tests read real mail.
    MAIL_SUPPRESS_SEND = env_bool("MAIL_SUPPRESS_SEND", False)

    OTP_APP_NAME = env_str("OTP_APP_NAME", "Passwordless")
    OTP_LENGTH = env_int("OTP_LENGTH", 6)
    OTP_TTL_SECONDS = env_int("OTP_TTL_SECONDS", 600)
    OTP_MAX_ATTEMPTS = env_int("OTP_MAX_ATTEMPTS", 5)
    OTP_RESEND_COOLDOWN_SECONDS = env_int("OTP_RESEND_COOLDOWN_SECONDS", 60)
    OTP_MAX_FAILURES = env_int("OTP_MAX_FAILURES", 10)
    OTP_LOCKOUT_SECONDS = env_int("OTP_LOCKOUT_SECONDS", 900)
    OTP_HOURLY_SEND_LIMIT = env_int("OTP_HOURLY_SEND_LIMIT", 10)
    # Per client IP, in the `limits` syntax; read on every request. One window each:
    # every window is one more Redis round trip per request (add one with "; ...").
    # Per-email guessing and flooding are bounded separately (OTP_MAX_FAILURES,
    # OTP_RESEND_COOLDOWN_SECONDS, OTP_HOURLY_SEND_LIMIT), whatever the client's IP.
    OTP_RATE_LIMIT_REQUEST = env_str("OTP_RATE_LIMIT_REQUEST", "20 per 10 minutes")
    OTP_RATE_LIMIT_VERIFY = env_str("OTP_RATE_LIMIT_VERIFY", "40 per 10 minutes")
    OTP_RATE_LIMIT_REFRESH = env_str("OTP_RATE_LIMIT_REFRESH", "60 per 10 minutes")
    OTP_RATE_LIMIT_LINK = env_str("OTP_RATE_LIMIT_LINK", "30 per 10 minutes")
    OTP_RATE_LIMIT_APPROVAL_POLL = env_str("OTP_RATE_LIMIT_APPROVAL_POLL", "600 per 10 minutes")
    # The code in the email's subject too: lock screens and mail logs then show it.
    OTP_CODE_IN_SUBJECT = env_bool("OTP_CODE_IN_SUBJECT", False)
    OTP_WEBAUTHN_RP_ID = env_str("OTP_WEBAUTHN_RP_ID")
    OTP_FRESH_LOGIN_SECONDS = env_int("OTP_FRESH_LOGIN_SECONDS", 300)
    OTP_RATE_LIMIT_PASSKEY = env_str("OTP_RATE_LIMIT_PASSKEY", "60 per 10 minutes")
    OTP_ALLOW_SIGNUP = env_bool("OTP_ALLOW_SIGNUP", True)
    OTP_SIGNUP_ALLOWED_DOMAINS = env_str("OTP_SIGNUP_ALLOWED_DOMAINS", "")
    OTP_SIGNUP_DENIED_DOMAINS = env_str("OTP_SIGNUP_DENIED_DOMAINS", "")
    OTP_SIGNUP_BLOCK_DISPOSABLE = env_bool("OTP_SIGNUP_BLOCK_DISPOSABLE", True)
    OTP_DEV_MAGIC_CODE = env_str("OTP_DEV_MAGIC_CODE")
    # Outgoing webhooks: a JSON list of {"url", "secret", "events"} (README "Webhooks").
    OTP_WEBHOOKS = env_str("OTP_WEBHOOKS", "")
    OTP_WEBHOOK_TIMEOUT_SECONDS = env_int("OTP_WEBHOOK_TIMEOUT_SECONDS", 10)
    OTP_WEBHOOK_RETRY_DELAYS = env_str(
        "OTP_WEBHOOK_RETRY_DELAYS", "5,300,1800,7200,18000,36000,36000"
    )
    # Level of the JSON log lines written by `wsgi` and `worker` (app.logs).
    OTP_LOG_LEVEL = env_str("OTP_LOG_LEVEL", "INFO")
    # OpenTelemetry spans (README, "Tracing"): to the TracerProvider the process set up.
    OTP_TRACING = env_bool("OTP_TRACING", False)
    # The Celery worker's own /metrics (its email counts), for workers on hosts without a
    # web process; 0 = off. With the prefork pool it needs PROMETHEUS_MULTIPROC_DIR.
    OTP_WORKER_METRICS_PORT = env_int("OTP_WORKER_METRICS_PORT", 0)
    OTP_WORKER_METRICS_ADDRESS = env_str("OTP_WORKER_METRICS_ADDRESS", "127.0.0.1")
    # A file the Celery worker touches every 5 s while it consumes (worker/), for a liveness
    # check: older than ~30 s, the worker takes no tasks. Unset: no file.
    OTP_WORKER_HEARTBEAT_FILE = env_str("WORKER_HEARTBEAT_FILE")
    # Sign-in links and emails. Links are built from this URL, never from the Host header.
    # localhost, not 127.0.0.1: a passkey's relying party must be a name, not an address.
    OTP_LINK_BASE_URL = env_str("OTP_LINK_BASE_URL", "http://localhost:8000")
    OTP_ACCENT_COLOR = env_str("OTP_ACCENT_COLOR", "#4f46e5")
    OTP_SUPPORT_EMAIL = env_str("OTP_SUPPORT_EMAIL")
    # A folder searched before the built-in templates (same names override them).
    OTP_TEMPLATE_FOLDER = env_str("OTP_TEMPLATE_FOLDER")

    JWT_SECRET_KEY = env_str("JWT_SECRET_KEY", DEV_JWT_SECRET_KEY)
    JWT_ALGORITHM = "HS256"
    JWT_DECODE_ALGORITHMS = ["HS256"]
    JWT_ENCODE_ISSUER = env_str("JWT_ISSUER", "passwordless")
    JWT_DECODE_ISSUER = JWT_ENCODE_ISSUER
    JWT_ENCODE_AUDIENCE = env_str("JWT_AUDIENCE", "passwordless")
    JWT_DECODE_AUDIENCE = JWT_ENCODE_AUDIENCE
    JWT_ACCESS_TOKEN_EXPIRES = timedelta(
        seconds=env_int("JWT_ACCESS_TOKEN_EXPIRES", 15 * 60)
    )
    JWT_REFRESH_TOKEN_EXPIRES = timedelta(
        seconds=env_int("JWT_REFRESH_TOKEN_EXPIRES", 14 * 24 * 3600)
    )
    JWT_TOKEN_LOCATION = ["cookies", "headers"]
    JWT_COOKIE_SECURE = env_bool("JWT_COOKIE_SECURE", False)
    JWT_COOKIE_SAMESITE = env_str("JWT_COOKIE_SAMESITE", "Lax")
    JWT_COOKIE_CSRF_PROTECT = True
    JWT_CSRF_CHECK_FORM = False
    # Persistent cookies that expire with their tokens, not browser-session cookies.
    JWT_SESSION_COOKIE = False
    JWT_ACCESS_COOKIE_NAME = env_str("JWT_ACCESS_COOKIE_NAME", "access_token")
    JWT_REFRESH_COOKIE_NAME = env_str("JWT_REFRESH_COOKIE_NAME", "refresh_token")
    JWT_ACCESS_COOKIE_PATH = "/"
    # The refresh cookie goes only to the extension's endpoints (its mount prefix).
    JWT_REFRESH_COOKIE_PATH = env_str("JWT_REFRESH_COOKIE_PATH", OTP_URL_PREFIX)
    # The CSRF cookies stay readable from every page so scripts can echo them.
    JWT_ACCESS_CSRF_COOKIE_PATH = "/"
    JWT_REFRESH_CSRF_COOKIE_PATH = "/"


class DevelopmentConfig(Config):
    APP_ENV = "development"


class TestingConfig(Config):
    APP_ENV = "testing"
    TESTING = True


class ProductionConfig(Config):
    """Secure defaults; flask_email_signin's production guard refuses unsafe overrides."""

    APP_ENV = "production"
    OTP_PRODUCTION = True
    JWT_COOKIE_SECURE = env_bool("JWT_COOKIE_SECURE", True)
    # `__Host-` binds the access cookie to this exact origin (Secure, path /, no Domain).
    JWT_ACCESS_COOKIE_NAME = env_str("JWT_ACCESS_COOKIE_NAME", "__Host-access_token")
    JWT_REFRESH_COOKIE_NAME = env_str("JWT_REFRESH_COOKIE_NAME", "__Secure-refresh_token")


CONFIGS: dict[str, type[Config]] = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}


def config_for_env(name: str | None = None) -> type[Config]:
    """The Config class named by `APP_ENV` (development when unset)."""
    name = name or env_str("APP_ENV", "development") or "development"
    try:
        return CONFIGS[name]
    except KeyError:
        raise RuntimeError(
            f"APP_ENV={name!r} is not one of {', '.join(sorted(CONFIGS))}"
        ) from None
