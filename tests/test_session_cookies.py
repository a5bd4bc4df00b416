"""The session cookies are set exactly as flask-jwt-extended's own functions set them."""

from __future__ import annotations

import pytest
from flask import Flask, Response
from flask_jwt_extended import (
    create_access_token,
    create_refresh_token,
    set_access_cookies,
    set_refresh_cookies,
)

from flask_email_signin.session_cookies import set_session_cookies


@pytest.mark.parametrize(
    ("overrides", "cookies"),
    [
        ({}, 4),
        ({"JWT_COOKIE_CSRF_PROTECT": False}, 2),
        ({"JWT_SESSION_COOKIE": True, "JWT_COOKIE_DOMAIN": "example.org"}, 4),
    ],
)
def test_same_cookies_as_the_library(
    app: Flask, monkeypatch: pytest.MonkeyPatch, overrides: dict[str, object], cookies: int
) -> None:
    for key, value in overrides.items():
        monkeypatch.setitem(app.config, key, value)
    with app.test_request_context():
        access = create_access_token("7", additional_claims={"sid": "s"})
        refresh = create_refresh_token("7", additional_claims={"sid": "s"})
        ours, library = Response(), Response()
        set_session_cookies(ours, access, refresh)
        set_access_cookies(library, access)
        set_refresh_cookies(library, refresh)
    assert ours.headers.getlist("Set-Cookie") == library.headers.getlist("Set-Cookie")
    assert len(ours.headers.getlist("Set-Cookie")) == cookies
