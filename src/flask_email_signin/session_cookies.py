"""The session's cookies, set as flask-jwt-extended's `set_*_cookies` set them, with two changes.

- No second decode. `set_access_cookies` and `set_refresh_cookies` fully decode and
  verify each token again just to read its `csrf` claim for the double-submit cookie
  (the largest single cost of a sign-in). The tokens here were made a moment ago by
  this very process, so the claims are read straight from the payload segment.
- Lifetimes follow the tokens. The library gives every persistent cookie a year;
  here each cookie (and its CSRF cookie) expires with its token, so a browser keeps
  nothing that could no longer be used. With JWT_SESSION_COOKIE they are browser-
  session cookies, as in the library.

Names, paths, domain and flags come from flask-jwt-extended's own config accessors.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from flask import Response
from flask_jwt_extended.config import config


def token_claims(token: str) -> dict[str, Any]:
    """The claims of a token this process has just made (not a verification)."""
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def _set(
    response: Response, name: str, value: str, *, path: str, httponly: bool, expires_at: int
) -> None:
    session_cookie = config.cookie_max_age is None  # JWT_SESSION_COOKIE
    response.set_cookie(
        name,
        value=value,
        max_age=None if session_cookie else max(0, expires_at - int(time.time())),
        secure=config.cookie_secure,
        httponly=httponly,
        domain=config.cookie_domain,
        path=path,
        samesite=config.cookie_samesite,
    )


def set_session_cookies(response: Response, access_token: str, refresh_token: str) -> None:
    """Access and refresh cookies, each followed by its CSRF cookie when CSRF protection is on
    (the library's order)."""
    set_access_cookie(response, access_token)
    double_submit = config.cookie_csrf_protect and config.csrf_in_cookies
    refresh = token_claims(refresh_token)
    _set(response, config.refresh_cookie_name, refresh_token,
         path=config.refresh_cookie_path, httponly=True, expires_at=refresh["exp"])
    if double_submit:
        _set(response, config.refresh_csrf_cookie_name, refresh["csrf"],
             path=config.refresh_csrf_cookie_path, httponly=False, expires_at=refresh["exp"])


def set_access_cookie(response: Response, access_token: str) -> None:
    """The access cookie and its CSRF cookie alone (a step-up renews only the access token)."""
    access = token_claims(access_token)
    _set(response, config.access_cookie_name, access_token,
         path=config.access_cookie_path, httponly=True, expires_at=access["exp"])
    if config.cookie_csrf_protect and config.csrf_in_cookies:
        _set(response, config.access_csrf_cookie_name, access["csrf"],
             path=config.access_csrf_cookie_path, httponly=False, expires_at=access["exp"])
