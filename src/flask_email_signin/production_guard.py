"""Refuse to start in production with settings that would be unsafe there."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from .webhooks import webhook_endpoints

MIN_SECRET_BYTES = 32
# Links to the machine itself never cross a network (the development default).
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


class UnsafeSettingError(RuntimeError):
    """Raised at start-up; the message names the setting to fix."""


def is_production(config: Mapping[str, Any], *, debug: bool, testing: bool) -> bool:
    """OTP_PRODUCTION when set; otherwise every app that is neither in debug nor testing."""
    setting = config.get("OTP_PRODUCTION")
    return (not (debug or testing)) if setting is None else bool(setting)


def check_production_settings(config: Mapping[str, Any]) -> None:
    """Raise UnsafeSettingError naming the first unsafe setting.

    OTP_KNOWN_DEV_SECRETS lists development defaults shipped in the host's own
    config: refused as secrets even when long enough.
    """
    known_dev_secrets = set(config.get("OTP_KNOWN_DEV_SECRETS") or ())
    for name in ("SECRET_KEY", "JWT_SECRET_KEY"):
        value = config.get(name)
        if not value:
            raise UnsafeSettingError(f"{name} is not set; production needs a random secret.")
        if value in known_dev_secrets:
            raise UnsafeSettingError(f"{name} is the development default; set a random secret.")
        if len(str(value).encode()) < MIN_SECRET_BYTES:
            raise UnsafeSettingError(
                f"{name} is shorter than {MIN_SECRET_BYTES} bytes; generate one with "
                "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`."
            )
    if config.get("OTP_DEV_MAGIC_CODE"):
        raise UnsafeSettingError("OTP_DEV_MAGIC_CODE is set; it must never be set in production.")
    if not config.get("JWT_COOKIE_SECURE"):
        raise UnsafeSettingError("JWT_COOKIE_SECURE is off; production cookies must be Secure.")
    if str(config.get("JWT_COOKIE_SAMESITE", "")).lower() not in {"lax", "strict"}:
        raise UnsafeSettingError("JWT_COOKIE_SAMESITE must be Lax or Strict in production.")
    if not config.get("JWT_COOKIE_CSRF_PROTECT"):
        raise UnsafeSettingError(
            "JWT_COOKIE_CSRF_PROTECT is off; production needs CSRF protection."
        )
    link_base = urlsplit(str(config.get("OTP_LINK_BASE_URL") or ""))
    if link_base.scheme != "https" and link_base.hostname not in LOOPBACK_HOSTS:
        raise UnsafeSettingError(
            "OTP_LINK_BASE_URL must start with https:// in production: "
            "sign-in links carry a secret."
        )
    for endpoint in webhook_endpoints(config):
        parts = urlsplit(endpoint.url)
        if parts.scheme != "https" and (parts.hostname or "").lower() not in LOOPBACK_HOSTS:
            raise UnsafeSettingError(
                f"OTP_WEBHOOKS: {endpoint.url!r} is not https://; webhooks carry addresses "
                "and IPs (http:// is allowed only to this machine: 127.0.0.1, localhost, ::1)."
            )
    if config.get("OTP_PASSKEYS"):
        for origin in _passkey_origins(config):
            parts = urlsplit(origin)
            if parts.scheme != "https" and (parts.hostname or "").lower() not in LOOPBACK_HOSTS:
                raise UnsafeSettingError(
                    f"OTP_WEBAUTHN_ORIGINS: {origin!r} is not https://; passkey responses "
                    "from it could be read and replayed on the way."
                )


def _passkey_origins(config: Mapping[str, Any]) -> list[str]:
    link_base = urlsplit(str(config.get("OTP_LINK_BASE_URL") or ""))
    origins = config.get("OTP_WEBAUTHN_ORIGINS") or [f"{link_base.scheme}://{link_base.netloc}"]
    return [origins] if isinstance(origins, str) else [str(o) for o in origins]


def passkey_setting_problem(config: Mapping[str, Any]) -> str | None:
    """Why passkeys cannot work with these settings, or None (logged at start-up).

    The relying party id must be a domain (browsers refuse IP addresses), and every
    allowed origin must be on that domain or under it: an assertion is only checked
    against these, never against `Host`. Not unsafe, only unusable: the rest of
    sign-in works (the production guard refuses what is unsafe: origins without https).
    """
    link_base = urlsplit(str(config.get("OTP_LINK_BASE_URL") or ""))
    rp_id = str(config.get("OTP_WEBAUTHN_RP_ID") or link_base.hostname or "").lower()
    if not rp_id or rp_id.replace(".", "").isdigit() or ":" in rp_id:
        return (
            f"OTP_WEBAUTHN_RP_ID {rp_id!r} is not a domain; passkeys need one (browsers "
            "refuse IP addresses): serve the app on a name, or set OTP_PASSKEYS = False."
        )
    for origin in _passkey_origins(config):
        host = (urlsplit(origin).hostname or "").lower()
        if host != rp_id and not host.endswith("." + rp_id):
            return f"OTP_WEBAUTHN_ORIGINS: {origin!r} is not on OTP_WEBAUTHN_RP_ID {rp_id!r}."
    return None
