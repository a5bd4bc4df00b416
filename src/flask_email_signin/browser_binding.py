"""The binding cookie: which browser asked for a sign-in link.

When the sign-in page asks for a code (`"bind_browser": true`), the answer sets an
HttpOnly, SameSite=Lax cookie holding 256 random bits; the pending sign-in keeps
only its keyed digest (see codes.binding_digest). The emailed link then signs in
with one click in that browser, and nowhere else: a scanner or another device
that opens it sees the approval page, where approving signs in the browser that
asked. A browser keeps its value across requests (several pending emails may
share it); it lives as long as a code.

The cookie is scoped to the extension's prefix, where the link pages and the
approval poll live, and follows the session cookies' Secure flag.
"""

from __future__ import annotations

import re

from flask import Response, request
from flask_jwt_extended.config import config

from .codes import generate_binding
from .settings import settings

_VALUE = re.compile(r"[A-Za-z0-9_-]{43}")


def binding_cookie_name() -> str:
    return settings.binding_cookie_name


def presented_binding() -> str | None:
    """This request's binding cookie, when it has a well-formed one."""
    value = request.cookies.get(binding_cookie_name(), "")
    return value if _VALUE.fullmatch(value) else None


def binding_for_this_browser() -> str:
    """The browser's binding value: the one it has, or a new one."""
    return presented_binding() or generate_binding()


def set_binding_cookie(response: Response, value: str) -> None:
    response.set_cookie(
        binding_cookie_name(),
        value=value,
        max_age=settings.code_ttl,
        secure=config.cookie_secure,
        httponly=True,
        samesite="Lax",
        path=settings.url_prefix or "/",
        domain=config.cookie_domain,
    )
