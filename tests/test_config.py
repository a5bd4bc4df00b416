"""Production refuses unsafe settings; its cookies are hardened."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from app import create_app
from config import DEV_JWT_SECRET_KEY, DEV_SECRET_KEY, ProductionConfig, config_for_env
from flask_email_signin import UnsafeSettingError
from support import SUITE_JWT_SECRET_KEY, SUITE_SECRET_KEY, AuthActions


def production_config(suite_config: type, **overrides: Any) -> type:
    """The suite's servers with ProductionConfig's defaults and strong secrets."""
    wiring = {
        key: getattr(suite_config, key)
        for key in ("OTP_REDIS_URL", "OTP_CELERY_BROKER_URL", "SQLALCHEMY_DATABASE_URI",
                    "MAIL_SERVER", "MAIL_PORT", "MAIL_SUPPRESS_SEND", "SQLALCHEMY_ENGINE_OPTIONS")
    }
    settings = {
        **wiring,
        "SECRET_KEY": SUITE_SECRET_KEY,
        "JWT_SECRET_KEY": SUITE_JWT_SECRET_KEY,
        "OTP_DEV_MAGIC_CODE": None,
        "JWT_COOKIE_SECURE": True,
        **overrides,
    }
    return type("ProdUnderTest", (ProductionConfig,), settings)


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"SECRET_KEY": None}, "SECRET_KEY"),
        ({"SECRET_KEY": DEV_SECRET_KEY}, "SECRET_KEY"),
        ({"SECRET_KEY": "short"}, "SECRET_KEY"),
        ({"JWT_SECRET_KEY": None}, "JWT_SECRET_KEY"),
        ({"JWT_SECRET_KEY": DEV_JWT_SECRET_KEY}, "JWT_SECRET_KEY"),
        ({"JWT_SECRET_KEY": secrets.token_hex(15)}, "JWT_SECRET_KEY"),
        ({"OTP_DEV_MAGIC_CODE": "000000"}, "OTP_DEV_MAGIC_CODE"),
        ({"JWT_COOKIE_SECURE": False}, "JWT_COOKIE_SECURE"),
        ({"JWT_COOKIE_SAMESITE": "None"}, "JWT_COOKIE_SAMESITE"),
        ({"JWT_COOKIE_CSRF_PROTECT": False}, "JWT_COOKIE_CSRF_PROTECT"),
    ],
)
def test_production_refuses_unsafe_settings(
    suite_config: type, overrides: dict[str, Any], named: str
) -> None:
    with pytest.raises(UnsafeSettingError, match=named):
        create_app(production_config(suite_config, **overrides))


def test_production_starts_with_safe_settings(suite_config: type) -> None:
    app = create_app(production_config(suite_config))
    assert app.config["APP_ENV"] == "production"


def test_production_cookies_are_secure_and_prefixed(
    suite_config: type, auth: AuthActions, email: str
) -> None:
    app = create_app(production_config(suite_config))
    client = app.test_client()
    assert client.post("/auth/request-otp", json={"email": email}).status_code == 202
    response = client.post(
        "/auth/verify-otp", json={"email": email, "otp": auth.read_code_from_inbox(email)}
    )
    assert response.status_code == 200
    headers = {h.split("=", 1)[0]: h for h in response.headers.getlist("Set-Cookie")}
    access, refresh = headers["__Host-access_token"], headers["__Secure-refresh_token"]
    for header in (access, refresh):
        assert "Secure" in header and "HttpOnly" in header and "SameSite=Lax" in header
    assert "Path=/" in access and "Domain" not in access
    assert "Path=/auth" in refresh


def test_app_env_selects_the_config_class() -> None:
    assert config_for_env("production") is ProductionConfig
    with pytest.raises(RuntimeError, match="APP_ENV"):
        config_for_env("staging")
