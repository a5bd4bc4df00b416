"""The session's cookies, set as flask-jwt-extended's `set_*_cookies` set them, minus a decode.

`set_access_cookies` and `set_refresh_cookies` fully decode and verify each token
again just to read its `csrf` claim for the double-submit cookie (the largest
single cost of a sign-in). The tokens here were made a moment ago by this very
process, so the claim is read straight from the payload segment; the cookies'
names, paths, flags and lifetimes come from flask-jwt-extended's own config
accessors, so they stay exactly the library's.
"""

from __future__ import annotations

import base64
import json

from flask import Response
from flask_jwt_extended.config import config


def _csrf_claim(token: str) -> str:
    """The `csrf` claim of a token this process has just made (not a verification)."""
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return str(claims["csrf"])


def _set(response: Response, name: str, value: str, *, path: str, httponly: bool) -> None:
    response.set_cookie(
        name,
        value=value,
        max_age=config.cookie_max_age,
        secure=config.cookie_secure,
        httponly=httponly,
        domain=config.cookie_domain,
        path=path,
        samesite=config.cookie_samesite,
    )


def set_session_cookies(response: Response, access_token: str, refresh_token: str) -> None:
    """Access and refresh cookies, each followed by its CSRF cookie when CSRF protection is on
    (the library's order)."""
    double_submit = config.cookie_csrf_protect and config.csrf_in_cookies
    _set(response, config.access_cookie_name, access_token,
         path=config.access_cookie_path, httponly=True)
    if double_submit:
        _set(response, config.access_csrf_cookie_name, _csrf_claim(access_token),
             path=config.access_csrf_cookie_path, httponly=False)
    _set(response, config.refresh_cookie_name, refresh_token,
         path=config.refresh_cookie_path, httponly=True)
    if double_submit:
        _set(response, config.refresh_csrf_cookie_name, _csrf_claim(refresh_token),
             path=config.refresh_csrf_cookie_path, httponly=False)
