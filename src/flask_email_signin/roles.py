"""Authorization by role, for the host app's views.

Roles travel in the access token's `roles` claim, so checking them costs no
database query; the session check (one Redis round trip) still runs, so a
revoked session is refused before its roles are looked at. A role granted or
revoked reaches the user's tokens at their next refresh (within
JWT_ACCESS_TOKEN_EXPIRES), or at once by ending their sessions.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

from flask_jwt_extended import get_jwt, verify_jwt_in_request

from .errors import Forbidden

ROLE_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
F = TypeVar("F", bound=Callable[..., Any])


def is_valid_role_name(role: str) -> bool:
    return bool(ROLE_NAME.fullmatch(role))


def current_roles() -> list[str]:
    """Roles of the signed-in user, as carried by the verified access token."""
    roles = get_jwt().get("roles", [])
    return [r for r in roles if isinstance(r, str)] if isinstance(roles, list) else []


def role_required(*roles: str) -> Callable[[F], F]:
    """Require a signed-in user holding at least one of `roles` (403 `forbidden` otherwise).

    Includes `jwt_required()`: no need to stack both.
    """
    if not roles or not all(is_valid_role_name(r) for r in roles):
        raise ValueError(f"role_required needs role names matching {ROLE_NAME.pattern}")

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            verify_jwt_in_request()
            if not set(roles) & set(current_roles()):
                raise Forbidden(details={"required_roles": sorted(roles)})
            return view(*args, **kwargs)

        return cast(F, wrapper)

    return decorator
