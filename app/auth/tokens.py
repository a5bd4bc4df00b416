"""Sign-in sessions and the JWT callbacks that enforce them.

Every sign-in is a session: a random `sid` carried by both its access and
refresh tokens, and a Redis record (see app.auth.store) that exists only while
the session is live. A token is accepted only when its session record exists,
so the check fails closed: revoking deletes the record, and a Redis that lost
its data signs everyone out rather than bringing revoked tokens back.

The per-request check is one Redis round trip: a script that tests the
record and stamps its last use (at most once a minute), so "last used" in
the session list is accurate for API clients that never refresh, without a
write on every request. Access tokens carry the user's `roles`, so protected
views need no database query; roles are re-read at each refresh.

Refresh tokens rotate: the session records the one refresh jti that may still
be used, each refresh swaps it for a new one (compare-and-swap in Redis), and
a retired refresh token coming back means two parties hold the session, so
the whole session ends. A session lasts JWT_REFRESH_TOKEN_EXPIRES from its
sign-in; rotation does not extend it, so a stolen chain cannot live forever.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask, Response, current_app
from flask_jwt_extended import create_access_token, create_refresh_token
from flask_jwt_extended.exceptions import (
    CSRFError,
    FreshTokenRequired,
    InvalidHeaderError,
    InvalidQueryParamError,
    JWTDecodeError,
    NoAuthorizationError,
    RevokedTokenError,
    UserClaimsVerificationError,
    UserLookupError,
    WrongTokenError,
)
from jwt.exceptions import (
    DecodeError,
    ExpiredSignatureError,
    InvalidAudienceError,
    InvalidIssuerError,
    InvalidTokenError,
    MissingRequiredClaimError,
)

from ..errors import error_response
from ..extensions import db, jwt
from ..metrics import TOKENS_REFRESHED, TOKENS_REVOKED
from ..models import User
from . import store
from .errors import AccountInactive, RefreshTokenReused, SessionEnded

log = logging.getLogger(__name__)
MAX_USER_AGENT_LENGTH = 256


def _session_ttl() -> int:
    return int(current_app.config["JWT_REFRESH_TOKEN_EXPIRES"].total_seconds())


def _new_id() -> str:
    return secrets.token_urlsafe(16)


def _access_token(user_id: str, sid: str, roles: Iterable[str]) -> str:
    return create_access_token(
        identity=user_id, additional_claims={"sid": sid, "roles": sorted(roles)}
    )


def start_session(user: User, *, ip: str | None, user_agent: str | None) -> tuple[str, str]:
    """Record a new session and return its (access token, refresh token)."""
    user_id, sid, refresh_jti = str(user.id), _new_id(), _new_id()
    store.create_session(
        user_id,
        sid,
        refresh_jti=refresh_jti,
        ip=ip or "",
        user_agent=(user_agent or "")[:MAX_USER_AGENT_LENGTH],
        ttl=_session_ttl(),
    )
    refresh = create_refresh_token(
        identity=user_id, additional_claims={"sid": sid, "jti": refresh_jti}
    )
    return _access_token(user_id, sid, user.roles), refresh


def refresh_session(refresh_payload: dict[str, Any]) -> tuple[str, str]:
    """Retire the presented refresh token; return a new (access token, refresh token).

    A refresh token that was already retired ends the session (RefreshTokenReused).
    """
    user_id, sid = str(refresh_payload["sub"]), str(refresh_payload["sid"])
    new_jti = _new_id()
    status = store.rotate_refresh_token(
        user_id, sid, presented=str(refresh_payload["jti"]), new=new_jti
    )
    if status == "reused":
        TOKENS_REVOKED.labels("refresh_reused").inc()
        log.warning(
            "retired refresh token presented; session ended",
            extra={"user_id": user_id, "event": "refresh_token_reused"},
        )
        raise RefreshTokenReused()
    if status != "ok":  # ended between the blocklist check and now
        raise SessionEnded()
    user = db.session.get(User, int(user_id))
    if user is None or not user.is_active:
        end_session(user_id, sid, reason="deactivated")
        raise AccountInactive()
    # The new refresh token ends when the session does, not later.
    # A float delta: the new `exp` rounds down to exactly the old one.
    remaining = timedelta(seconds=max(refresh_payload["exp"] - time.time(), 1))
    refresh = create_refresh_token(
        identity=user_id,
        additional_claims={"sid": sid, "jti": new_jti},
        expires_delta=remaining,
    )
    TOKENS_REFRESHED.inc()
    return _access_token(user_id, sid, user.roles), refresh


def end_session(user_id: str, sid: str, *, reason: str) -> bool:
    """End one sign-in everywhere: both of its tokens stop working at once.

    Returns False when the user had no live session with that id.
    """
    ended = store.revoke_sessions(user_id, [sid]) > 0
    if ended:
        TOKENS_REVOKED.labels(reason).inc()
    return ended


def end_all_sessions(user_id: str, *, reason: str, keep: str | None = None) -> int:
    """End every session of the user (but `keep`, if given); returns how many ended."""
    sids = [sid for sid in store.session_ids(user_id) if sid != keep]
    ended = store.revoke_sessions(user_id, sids)
    if ended:
        TOKENS_REVOKED.labels(reason).inc(ended)
    return ended


@dataclass(frozen=True)
class SessionInfo:
    """One live session as shown to its user (see SessionSchema)."""

    id: str
    created_at: str
    last_used_at: str
    ip: str
    user_agent: str
    current: bool


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def list_sessions(user_id: str, *, current_sid: str | None = None) -> list[SessionInfo]:
    """The user's live sessions, most recently used first."""
    return [
        SessionInfo(
            id=record.sid,
            created_at=_iso(record.created),
            last_used_at=_iso(record.last_used),
            ip=record.ip,
            user_agent=record.user_agent,
            current=record.sid == current_sid,
        )
        for record in store.list_sessions(user_id)
    ]


def session_is_live(jwt_payload: dict[str, Any]) -> bool:
    sid = jwt_payload.get("sid")
    if not isinstance(sid, str):
        return False
    return store.touch_session(str(jwt_payload["sub"]), sid)


@jwt.token_in_blocklist_loader
def token_is_revoked(_header: dict[str, Any], payload: dict[str, Any]) -> bool:
    """Refused unless its session is known to be live (fails closed)."""
    return not session_is_live(payload)


def _token_error(status: int, code: str, message: str) -> Callable[[Exception], Response]:
    def handler(_error: Exception) -> Response:
        return error_response(status, code, message)

    return handler


def register_token_error_handlers(app: Flask) -> None:
    """JSON errors for every token failure, in place of flask-jwt-extended's."""

    # Registered after JWTManager.init_app, so these replace its {"msg": ...} answers.
    for exc, status, code, message in (
        (NoAuthorizationError, 401, "token_missing", "Sign in first: no access token was sent."),
        (CSRFError, 401, "csrf_failed",
         "Missing or mismatched CSRF token: send the csrf cookie's value in X-CSRF-TOKEN."),
        (ExpiredSignatureError, 401, "token_expired", "The token has expired."),
        (RevokedTokenError, 401, "token_revoked", "This session has ended. Sign in again."),
        (WrongTokenError, 401, "wrong_token_type", "This kind of token is not accepted here."),
        (InvalidHeaderError, 401, "token_invalid", "The authorization header is malformed."),
        (JWTDecodeError, 401, "token_invalid", "The token is invalid."),
        (InvalidTokenError, 401, "token_invalid", "The token is invalid."),
        (DecodeError, 401, "token_invalid", "The token is invalid."),
        (InvalidAudienceError, 401, "token_invalid", "The token is not meant for this service."),
        (InvalidIssuerError, 401, "token_invalid", "The token was not issued by this service."),
        (MissingRequiredClaimError, 401, "token_invalid", "The token lacks a required claim."),
        (InvalidQueryParamError, 401, "token_invalid", "The token is invalid."),
        (UserClaimsVerificationError, 401, "token_invalid", "The token is invalid."),
        (UserLookupError, 401, "token_invalid", "The token's user was not found."),
        (FreshTokenRequired, 401, "fresh_token_required", "Sign in again for this action."),
    ):
        app.register_error_handler(exc, _token_error(status, code, message))
