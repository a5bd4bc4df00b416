"""Every setting of the extension: its default, in one place, and a typed accessor.

`EmailSignIn.init_app` `setdefault`s each key of `DEFAULTS` on the app's config,
so a host sets only what it wants to change. Code reads settings through
`settings.<name>` (read from the current app's config at each access, like
flask-jwt-extended's `config`), so a value changed on a running app (a test, say)
takes effect at once. README.md ("Configuration") documents each key.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, current_app
from flask_jwt_extended import JWTManager

DEFAULTS: Mapping[str, Any] = {
    # Where the extension is mounted: its API, and its pages when OTP_PAGES is on.
    "OTP_URL_PREFIX": "/auth",
    # The sign-in page (<prefix>/login) and the link pages; off for API-only hosts.
    "OTP_PAGES": True,
    # Also serve the sign-in page at the app's `/` (for an app that is only sign-in).
    "OTP_SIGNIN_PAGE_AT_ROOT": False,
    # The JSON error envelope answers for the extension's blueprints only; on: app-wide.
    "OTP_JSON_ERRORS_APP_WIDE": False,
    # Unsafe settings refuse to start (see production_guard); None: on unless debug/testing.
    "OTP_PRODUCTION": None,
    # Development secrets of the host's own config, refused in production.
    "OTP_KNOWN_DEV_SECRETS": (),
    # The Redis that holds codes, cooldowns and sessions (one server, Cluster or Sentinel).
    "OTP_REDIS_URL": "redis://127.0.0.1:6379/0",
    "OTP_REDIS_CLUSTER": False,
    "OTP_REDIS_SOCKET_TIMEOUT": 1.0,
    # A command failing on a connection error or timeout is retried (with backoff) this
    # long: a failover or a restart costs latency, not errors. 0: a 503 at once.
    "OTP_REDIS_RETRY_SECONDS": 5.0,
    # The broker of the email task, when the extension makes the app's Celery app.
    "OTP_CELERY_BROKER_URL": None,  # None: OTP_REDIS_URL
    # Redis broker: seconds before a task whose worker died unacknowledged is handed out again.
    "OTP_CELERY_VISIBILITY_TIMEOUT": 300,
    # Per client IP on the extension's endpoints, in the `limits` syntax ("20 per 10 minutes").
    "OTP_RATE_LIMIT_ENABLED": True,
    "OTP_RATE_LIMIT_STORAGE_URI": None,  # None: OTP_REDIS_URL
    "OTP_RATE_LIMIT_STRATEGY": "fixed-window",
    "OTP_RATE_LIMIT_REQUEST": "20 per 10 minutes",
    "OTP_RATE_LIMIT_VERIFY": "40 per 10 minutes",
    "OTP_RATE_LIMIT_REFRESH": "60 per 10 minutes",
    # Link pages' posts (use, approve, deny), and the asking page's approval polls.
    "OTP_RATE_LIMIT_LINK": "30 per 10 minutes",
    "OTP_RATE_LIMIT_APPROVAL_POLL": "600 per 10 minutes",
    # Passkey ceremonies (options and verification, sign-in and step-up).
    "OTP_RATE_LIMIT_PASSKEY": "60 per 10 minutes",
    # Codes and links.
    "OTP_LENGTH": 6,
    "OTP_TTL_SECONDS": 600,
    "OTP_MAX_ATTEMPTS": 5,
    "OTP_RESEND_COOLDOWN_SECONDS": 60,
    "OTP_MAX_FAILURES": 10,
    "OTP_LOCKOUT_SECONDS": 900,
    "OTP_HOURLY_SEND_LIMIT": 10,
    "OTP_ALLOW_SIGNUP": True,
    # Who may sign up (existing accounts always may sign in; see signup_policy):
    # only these domains (empty: any), never these, and no disposable-address domains.
    "OTP_SIGNUP_ALLOWED_DOMAINS": (),
    "OTP_SIGNUP_DENIED_DOMAINS": (),
    "OTP_SIGNUP_BLOCK_DISPOSABLE": True,
    "OTP_DEV_MAGIC_CODE": None,
    # Links are built from this URL, never from a request's Host header.
    "OTP_LINK_BASE_URL": "http://127.0.0.1:5000",
    # Passkeys (WebAuthn): the relying party is the site of OTP_LINK_BASE_URL unless set.
    "OTP_PASSKEYS": True,
    "OTP_WEBAUTHN_RP_ID": None,  # None: the host of OTP_LINK_BASE_URL
    "OTP_WEBAUTHN_RP_NAME": None,  # None: OTP_APP_NAME
    "OTP_WEBAUTHN_ORIGINS": None,  # None: the origin of OTP_LINK_BASE_URL
    "OTP_WEBAUTHN_TIMEOUT_SECONDS": 120,
    # Sensitive actions need an authentication (passkey or code) this recent.
    "OTP_FRESH_LOGIN_SECONDS": 300,
    # The cookie that binds an emailed link to the browser that asked (see browser_binding).
    "OTP_BINDING_COOKIE_NAME": "email_signin_binding",
    # The code in the email's subject too: handy, but lock screens and mail logs show it.
    "OTP_CODE_IN_SUBJECT": False,
    # What the pages and emails show.
    "OTP_APP_NAME": "Passwordless",
    "OTP_ACCENT_COLOR": "#4f46e5",
    "OTP_SUPPORT_EMAIL": None,
    # Folders (relative to the app's root) of the host's own `flask_email_signin` catalogues:
    # a locale of theirs is added, and their messages win over the built-in ones.
    "OTP_TRANSLATION_DIRECTORIES": (),
    # Seconds an SMTP connect, command or reply may take before the send fails (and retries).
    "OTP_MAIL_TIMEOUT_SECONDS": 30,
    # How long the "this wasn't me" link mailed to the old address can undo a change.
    "OTP_EMAIL_CHANGE_UNDO_SECONDS": 72 * 3600,
    "OTP_RATE_LIMIT_EMAIL_CHANGE": "10 per hour",
    # The audit log (see audit.py): on by default; events are written in batches this
    # often, at most this many wait in a process, and `flask audit prune` keeps this many days.
    "OTP_AUDIT_LOG": True,
    "OTP_AUDIT_FLUSH_SECONDS": 1.0,
    "OTP_AUDIT_MAX_BUFFERED": 10000,
    "OTP_AUDIT_RETENTION_DAYS": 90,
    # Outgoing webhooks (see webhooks.py): a list of endpoints, each
    # {"url": ..., "secret": "whsec_...", "events": [...]} (events left out: all of them;
    # "session.*" names a family), or that list as JSON text (from the environment).
    "OTP_WEBHOOKS": (),
    # Seconds one delivery attempt may wait for the receiver (connect, then each read).
    "OTP_WEBHOOK_TIMEOUT_SECONDS": 10,
    # Seconds between a failed attempt and the next (the Standard Webhooks schedule: 5 s,
    # 5 min, 30 min, 2 h, 5 h, 10 h, 10 h); after the last, the webhook is dead-lettered.
    "OTP_WEBHOOK_RETRY_DELAYS": (5, 300, 1800, 7200, 18000, 36000, 36000),
    # Names of the CLI groups (`flask users ...`, `flask mail ...`); None: not registered.
    "OTP_CLI_USERS_NAME": "users",
    "OTP_CLI_MAIL_NAME": "mail",
    "OTP_CLI_AUDIT_NAME": "audit",
    # OpenTelemetry spans to the host's global TracerProvider (see tracing); off: none, no import.
    "OTP_TRACING": False,
}

# flask-jwt-extended settings the extension needs. Set when the app has none, or still
# has flask-jwt-extended's own default: a host's JWTManager, bound before the extension,
# `setdefault`s the library's values first (browser-session cookies, no SameSite,
# 30-day refresh tokens), and those must not silently win over these. A value the host
# chose itself (anything but the library default) is kept.
JWT_DEFAULTS: Mapping[str, Any] = {
    "JWT_TOKEN_LOCATION": ["cookies", "headers"],
    "JWT_COOKIE_CSRF_PROTECT": True,
    "JWT_CSRF_CHECK_FORM": False,
    # Persistent cookies that expire with their tokens, not browser-session cookies.
    "JWT_SESSION_COOKIE": False,
    "JWT_COOKIE_SAMESITE": "Lax",
    "JWT_ACCESS_TOKEN_EXPIRES": timedelta(minutes=15),
    "JWT_REFRESH_TOKEN_EXPIRES": timedelta(days=14),
    # The CSRF cookies stay readable from every page so scripts can echo them.
    "JWT_ACCESS_CSRF_COOKIE_PATH": "/",
    "JWT_REFRESH_CSRF_COOKIE_PATH": "/",
}


class Settings:
    """Typed, read-only views of the current app's settings."""

    @property
    def _config(self) -> Mapping[str, Any]:
        return current_app.config

    @property
    def url_prefix(self) -> str:
        return str(self._config["OTP_URL_PREFIX"]).rstrip("/")

    @property
    def redis_retry_seconds(self) -> float:
        return float(self._config["OTP_REDIS_RETRY_SECONDS"])

    @property
    def redis_socket_timeout(self) -> float:
        return float(self._config["OTP_REDIS_SOCKET_TIMEOUT"])

    @property
    def code_length(self) -> int:
        return int(self._config["OTP_LENGTH"])

    @property
    def code_ttl(self) -> int:
        return int(self._config["OTP_TTL_SECONDS"])

    @property
    def max_attempts(self) -> int:
        return int(self._config["OTP_MAX_ATTEMPTS"])

    @property
    def resend_cooldown(self) -> int:
        return int(self._config["OTP_RESEND_COOLDOWN_SECONDS"])

    @property
    def max_failures(self) -> int:
        return int(self._config["OTP_MAX_FAILURES"])

    @property
    def lockout_seconds(self) -> int:
        return int(self._config["OTP_LOCKOUT_SECONDS"])

    @property
    def hourly_send_limit(self) -> int:
        return int(self._config["OTP_HOURLY_SEND_LIMIT"])

    @property
    def allow_signup(self) -> bool:
        return bool(self._config["OTP_ALLOW_SIGNUP"])

    @property
    def signup_allowed_domains(self) -> frozenset[str]:
        return _domains(self._config["OTP_SIGNUP_ALLOWED_DOMAINS"])

    @property
    def signup_denied_domains(self) -> frozenset[str]:
        return _domains(self._config["OTP_SIGNUP_DENIED_DOMAINS"])

    @property
    def signup_block_disposable(self) -> bool:
        return bool(self._config["OTP_SIGNUP_BLOCK_DISPOSABLE"])

    @property
    def dev_magic_code(self) -> str | None:
        return self._config.get("OTP_DEV_MAGIC_CODE") or None

    @property
    def link_base_url(self) -> str:
        return str(self._config["OTP_LINK_BASE_URL"]).rstrip("/")

    @property
    def passkeys_enabled(self) -> bool:
        return bool(self._config["OTP_PASSKEYS"])

    @property
    def webauthn_rp_id(self) -> str:
        return str(self._config["OTP_WEBAUTHN_RP_ID"] or urlsplit(self.link_base_url).hostname)

    @property
    def webauthn_rp_name(self) -> str:
        return str(self._config["OTP_WEBAUTHN_RP_NAME"] or self.app_name)

    @property
    def webauthn_origins(self) -> list[str]:
        origins = self._config["OTP_WEBAUTHN_ORIGINS"]
        if origins:
            return [origins] if isinstance(origins, str) else [str(o) for o in origins]
        base = urlsplit(self.link_base_url)
        return [f"{base.scheme}://{base.netloc}"]

    @property
    def webauthn_timeout(self) -> int:
        return int(self._config["OTP_WEBAUTHN_TIMEOUT_SECONDS"])

    @property
    def fresh_login_seconds(self) -> int:
        return int(self._config["OTP_FRESH_LOGIN_SECONDS"])

    @property
    def binding_cookie_name(self) -> str:
        return str(self._config["OTP_BINDING_COOKIE_NAME"])

    @property
    def code_in_subject(self) -> bool:
        return bool(self._config["OTP_CODE_IN_SUBJECT"])

    @property
    def app_name(self) -> str:
        return str(self._config["OTP_APP_NAME"])

    @property
    def accent_color(self) -> str:
        return str(self._config.get("OTP_ACCENT_COLOR") or "")

    @property
    def support_email(self) -> str | None:
        return self._config.get("OTP_SUPPORT_EMAIL") or None

    @property
    def mail_timeout(self) -> float:
        return float(self._config["OTP_MAIL_TIMEOUT_SECONDS"])

    @property
    def audit_retention_days(self) -> int:
        return int(self._config["OTP_AUDIT_RETENTION_DAYS"])

    @property
    def tracing(self) -> bool:
        return bool(self._config["OTP_TRACING"])

    @property
    def webhook_timeout(self) -> float:
        return float(self._config["OTP_WEBHOOK_TIMEOUT_SECONDS"])

    @property
    def webhook_retry_delays(self) -> tuple[float, ...]:
        return seconds_list(self._config["OTP_WEBHOOK_RETRY_DELAYS"])

    @property
    def session_ttl(self) -> int:
        """A session lives as long as its first refresh token."""
        return int(self._config["JWT_REFRESH_TOKEN_EXPIRES"].total_seconds())

    def rate_limit(self, key: str) -> str:
        return str(self._config[key])

    @property
    def secret_key(self) -> bytes:
        secret = self._config.get("SECRET_KEY")
        if not secret:
            raise RuntimeError("SECRET_KEY is not set: codes are hashed with a key from it.")
        return str(secret).encode()


settings = Settings()


@functools.lru_cache(maxsize=32)
def _parsed_domains(value: tuple[str, ...]) -> frozenset[str]:
    return frozenset(d.strip().lower().lstrip("@.") for d in value if d.strip())


def _domains(value: Any) -> frozenset[str]:
    """A list of domains, or one comma-separated string of them (from the environment)."""
    if isinstance(value, str):
        value = value.split(",")
    return _parsed_domains(tuple(value or ()))


def seconds_list(value: Any) -> tuple[float, ...]:
    """A list of seconds, or one comma-separated string of them (from the environment)."""
    if isinstance(value, str):
        value = [part for part in value.split(",") if part.strip()]
    return tuple(float(item) for item in value or ())


@functools.cache
def library_jwt_defaults() -> Mapping[str, Any]:
    """flask-jwt-extended's own defaults, as its JWTManager sets them on an app."""
    probe = Flask("flask_email_signin.jwt_defaults")
    JWTManager._set_default_configuration_options(probe)
    return dict(probe.config)


def apply_defaults(config: dict[str, Any]) -> None:
    """`setdefault` every key the extension reads (the app's own choices win)."""
    for key, value in DEFAULTS.items():
        config.setdefault(key, value)
    library = library_jwt_defaults()
    for key, value in JWT_DEFAULTS.items():
        # JWT_TOKEN_LOCATION is never widened behind the host's back: init_app explains.
        unset_or_library = key not in config or (
            key != "JWT_TOKEN_LOCATION" and config[key] == library.get(key)
        )
        if unset_or_library:
            config[key] = value
    # The refresh cookie goes only to the extension's endpoints: unset, or left at
    # flask-jwt-extended's own default "/" by a host's JWTManager, it is narrowed to them.
    if config.get("JWT_REFRESH_COOKIE_PATH", "/") == "/":
        config["JWT_REFRESH_COOKIE_PATH"] = str(config["OTP_URL_PREFIX"]).rstrip("/") or "/"
