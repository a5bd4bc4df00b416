"""The session cookies: the library's names, paths and flags, lifetimes that follow the tokens."""

from __future__ import annotations

import re
import time

import pytest
from flask import Flask, Response
from flask_jwt_extended import (
    create_access_token,
    create_refresh_token,
    decode_token,
    set_access_cookies,
    set_refresh_cookies,
)
from live_stack import WebNode

from flask_email_signin.session_cookies import set_session_cookies
from support import AuthActions, new_email

LIFETIME = re.compile(r"; (Expires=[^;]+|Max-Age=\d+)")


def cookies(app: Flask) -> tuple[list[str], list[str], dict[str, int]]:
    """Ours and the library's Set-Cookie headers for one fresh pair, and the tokens' exp."""
    with app.test_request_context():
        access = create_access_token("7", additional_claims={"sid": "s"})
        refresh = create_refresh_token("7", additional_claims={"sid": "s"})
        ours, library = Response(), Response()
        set_session_cookies(ours, access, refresh)
        set_access_cookies(library, access)
        set_refresh_cookies(library, refresh)
        expiry = {"access": decode_token(access)["exp"], "refresh": decode_token(refresh)["exp"]}
    return ours.headers.getlist("Set-Cookie"), library.headers.getlist("Set-Cookie"), expiry


@pytest.mark.parametrize(
    ("overrides", "count"),
    [
        ({}, 4),
        ({"JWT_COOKIE_CSRF_PROTECT": False}, 2),
        ({"JWT_COOKIE_DOMAIN": "example.org"}, 4),
        ({"JWT_SESSION_COOKIE": True}, 4),
    ],
)
def test_the_libraries_cookies_but_for_their_lifetimes(
    app: Flask, monkeypatch: pytest.MonkeyPatch, overrides: dict[str, object], count: int
) -> None:
    for key, value in overrides.items():
        monkeypatch.setitem(app.config, key, value)
    ours, library, _ = cookies(app)
    assert len(ours) == count
    assert [LIFETIME.sub("", c) for c in ours] == [LIFETIME.sub("", c) for c in library]


def test_each_cookie_expires_with_its_token(app: Flask) -> None:
    ours, _, expiry = cookies(app)
    now = int(time.time())
    max_age = {c.split("=", 1)[0]: int(re.search(r"Max-Age=(\d+)", c).group(1))  # type: ignore[union-attr]
               for c in ours}
    names = app.config
    for cookie, token in ((names["JWT_ACCESS_COOKIE_NAME"], "access"),
                          (names["JWT_ACCESS_CSRF_COOKIE_NAME"], "access"),
                          (names["JWT_REFRESH_COOKIE_NAME"], "refresh"),
                          (names["JWT_REFRESH_CSRF_COOKIE_NAME"], "refresh")):
        assert abs(max_age[cookie] - (expiry[token] - now)) <= 2, cookie
    assert max_age[names["JWT_ACCESS_COOKIE_NAME"]] <= 15 * 60


def test_session_cookies_carry_no_lifetime(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(app.config, "JWT_SESSION_COOKIE", True)
    ours, _, _ = cookies(app)
    assert not any(LIFETIME.search(c) for c in ours)


def max_age(set_cookie: str) -> int:
    found = re.search(r"; Max-Age=(\d+)", set_cookie)
    assert found and "Expires=" in set_cookie, set_cookie  # both, as Werkzeug writes them
    return int(found.group(1))


@pytest.mark.live
def test_cookies_set_through_gunicorn_live_as_long_as_what_they_carry(
    served: WebNode, auth: AuthActions, app: Flask
) -> None:
    """A real sign-in over HTTP: every cookie's Max-Age is its token's (or the code's) lifetime,
    never the library's year."""
    email = new_email("cookies")
    asked = served.post_json("/auth/request-otp", {"email": email, "bind_browser": True})
    assert asked.status == 202, asked.body
    binding = asked.set_cookies()[app.config["OTP_BINDING_COOKIE_NAME"]]
    # The binding lives as long as the code it was set with.
    assert 0 < max_age(binding) <= app.config["OTP_TTL_SECONDS"]
    signed_in = served.post_json(
        "/auth/verify-otp", {"email": email, "otp": auth.read_code_from_inbox(email)}
    )
    assert signed_in.status == 200, signed_in.body
    cookies = signed_in.set_cookies()
    access_seconds = int(app.config["JWT_ACCESS_TOKEN_EXPIRES"].total_seconds())
    refresh_seconds = int(app.config["JWT_REFRESH_TOKEN_EXPIRES"].total_seconds())
    assert (access_seconds, refresh_seconds) == (15 * 60, 14 * 24 * 3600)
    lifetimes = {
        app.config["JWT_ACCESS_COOKIE_NAME"]: access_seconds,
        app.config["JWT_ACCESS_CSRF_COOKIE_NAME"]: access_seconds,
        app.config["JWT_REFRESH_COOKIE_NAME"]: refresh_seconds,
        app.config["JWT_REFRESH_CSRF_COOKIE_NAME"]: refresh_seconds,
    }
    assert set(cookies) == set(lifetimes)
    for name, lifetime in lifetimes.items():
        # Within a minute of the token's whole life: set as the token was made.
        assert lifetime - 60 <= max_age(cookies[name]) <= lifetime, cookies[name]
