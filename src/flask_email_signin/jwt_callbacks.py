"""The session check, installed on whichever flask-jwt-extended manager the app has.

flask-jwt-extended asks its manager's blocklist callback about every token that
any `@jwt_required()` view receives, so installing the check there makes a
revoked session fail on every view of the app, the host's own included.

A token carrying our `sid` claim is accepted only while its session record
exists (fail closed: a Redis that lost its data signs everyone out). A token
without one was not issued by this extension: it is handed to the blocklist
callback the host registered before `init_app`, and refused when there is none,
so nothing signed with the app's key slips past revocation by omission.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import current_app
from flask_jwt_extended import JWTManager
from flask_jwt_extended.default_callbacks import default_blocklist_callback

from . import session_store
from .state import EXTENSION_KEY

BlocklistCallback = Callable[[dict[str, Any], dict[str, Any]], bool]
_INSTALLED_MARK = "_email_signin_session_check"


def session_is_live(payload: dict[str, Any]) -> bool:
    sid = payload.get("sid")
    if not isinstance(sid, str):
        return False
    return session_store.touch_session(str(payload["sub"]), sid)


def install_session_check(manager: JWTManager) -> None:
    """Make the manager refuse tokens of ended sessions (idempotent per manager)."""
    previous: BlocklistCallback = manager._token_in_blocklist_callback
    if getattr(previous, _INSTALLED_MARK, False):
        return
    host_callback = None if previous is default_blocklist_callback else previous

    def token_is_revoked(header: dict[str, Any], payload: dict[str, Any]) -> bool:
        """Refused unless its session is known to be live; others go to the host's check."""
        if EXTENSION_KEY not in current_app.extensions:  # another app sharing this manager
            return previous(header, payload)
        if "sid" in payload:
            return not session_is_live(payload)
        return True if host_callback is None else host_callback(header, payload)

    setattr(token_is_revoked, _INSTALLED_MARK, True)
    manager.token_in_blocklist_loader(token_is_revoked)


def session_check_installed(manager: JWTManager) -> bool:
    return bool(getattr(manager._token_in_blocklist_callback, _INSTALLED_MARK, False))


class SessionCheckRemoved(RuntimeError):
    """The app's JWTManager no longer runs the session check: revoked tokens would pass."""


def ensure_session_check() -> None:
    """Before every request of the app: fail closed if the check was replaced after init_app.

    A blocklist loader registered, or a JWTManager bound, after `init_app` would
    silently let ended sessions back in; every request then fails instead (500,
    with this message in the log) until the order is fixed.
    """
    manager = current_app.extensions.get("flask-jwt-extended")
    if manager is None or not session_check_installed(manager):
        raise SessionCheckRemoved(
            "The JWTManager of this app lost flask_email_signin's session check: a "
            "token_in_blocklist_loader was registered, or a JWTManager bound, after "
            "EmailSignIn.init_app. Do either before init_app (a loader registered first "
            "still sees the tokens the extension did not issue)."
        )
