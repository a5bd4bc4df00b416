"""Step-up: sensitive actions need a recent authentication, by passkey or a fresh code.

Access tokens carry `auth_time`, when the user last proved who they are: set at
sign-in, kept by refreshes, renewed by a step-up. `fresh_login_required` refuses
an older one with 401 `fresh_login_required` (its `details.max_age` in seconds),
which the sign-in page answers by asking for the passkey or a code, then retrying.
Host apps decorate their own views with it too.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

from flask import current_app
from flask_jwt_extended import get_jwt, verify_jwt_in_request

from .errors import FreshLoginRequired
from .sessions import AUTH_TIME_CLAIM
from .settings import settings

F = TypeVar("F", bound=Callable[..., Any])


def seconds_since_authentication() -> float:
    auth_time = get_jwt().get(AUTH_TIME_CLAIM)
    return time.time() - auth_time if isinstance(auth_time, int) else float("inf")


def fresh_login_required(max_age: int | None = None) -> Callable[[F], F]:
    """A signed-in user who authenticated within `max_age` seconds (default:
    OTP_FRESH_LOGIN_SECONDS); verifies the token itself, like `jwt_required()`."""

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            verify_jwt_in_request()
            limit = settings.fresh_login_seconds if max_age is None else max_age
            if seconds_since_authentication() > limit:
                raise FreshLoginRequired(details={"max_age": limit})
            return current_app.ensure_sync(view)(*args, **kwargs)

        return cast(F, wrapper)

    return decorator
