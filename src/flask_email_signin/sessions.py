"""Sign-in sessions: start, refresh, end and list them (jwt_callbacks enforces them).

Every sign-in is a session: a random `sid` carried by both its access and
refresh tokens, and a Redis record (see session_store) that exists only while
the session is live. A token is accepted only when its session record exists,
so the check fails closed: revoking deletes the record, and a Redis that lost
its data signs everyone out rather than bringing revoked tokens back.

The per-request check is one Redis round trip: a script that tests the
record and stamps its last use (at most once a minute), so "last used" in
the session list is accurate for API clients that never refresh, without a
write on every request. Access tokens carry the user's `roles`, so protected
views need no database query; roles (and the user's language) are re-read at each refresh.

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
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from flask_jwt_extended import create_access_token, create_refresh_token

from . import audit
from . import session_store as store
from .errors import AccountInactive, RefreshTokenReused, SessionEnded
from .i18n import LOCALE_CLAIM
from .metrics import TOKENS_REFRESHED, TOKENS_REVOKED
from .settings import settings
from .signals import emit, session_ended
from .state import user_store

log = logging.getLogger(__name__)
MAX_USER_AGENT_LENGTH = 256


def _new_id() -> str:
    return secrets.token_urlsafe(16)


# When the user last proved who they are (OIDC's name): fresh_login_required reads it.
AUTH_TIME_CLAIM = "auth_time"


def _access_token(
    user_id: str, sid: str, roles: Iterable[str], locale: str | None, auth_time: int
) -> str:
    claims: dict[str, Any] = {"sid": sid, "roles": sorted(roles), AUTH_TIME_CLAIM: auth_time}
    if locale:
        claims[LOCALE_CLAIM] = locale  # the user's language, without a query (see i18n)
    return create_access_token(identity=user_id, additional_claims=claims)


def start_session(
    user: Any, *, ip: str | None, user_agent: str | None, method: str = "code"
) -> tuple[str, str]:
    """Record a new session and return its (access token, refresh token).

    `method`: how the user proved who they are (code, link, approval, passkey).
    """
    user_id, sid, refresh_jti = str(user.id), _new_id(), _new_id()
    store.create_session(
        user_id,
        sid,
        refresh_jti=refresh_jti,
        ip=ip or "",
        user_agent=(user_agent or "")[:MAX_USER_AGENT_LENGTH],
        ttl=settings.session_ttl,
        method=method,
    )
    now = int(time.time())
    refresh = create_refresh_token(
        identity=user_id,
        additional_claims={"sid": sid, "jti": refresh_jti, AUTH_TIME_CLAIM: now},
    )
    return _access_token(user_id, sid, user.roles, user.locale, now), refresh


def fresh_access_token(user: Any, sid: str) -> str:
    """A new access token of this session, recording an authentication just now (step-up).

    Only the access token changes: after its next refresh the session falls back to
    its sign-in time, which is older, never fresher.
    """
    return _access_token(str(user.id), sid, user.roles, user.locale, int(time.time()))


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
        audit.record(audit.SESSION_REFRESH_REUSED, user_id=user_id, detail={"session_id": sid})
        emit(session_ended, user_id=int(user_id), session_id=sid, reason="refresh_reused")
        log.warning(
            "retired refresh token presented; session ended",
            extra={"user_id": user_id, "event": "refresh_token_reused"},
        )
        raise RefreshTokenReused()
    if status != "ok":  # ended between the blocklist check and now
        raise SessionEnded()
    user = user_store().get(int(user_id))
    if user is None or not user.is_active:
        end_session(user_id, sid, reason="deactivated")
        raise AccountInactive()
    # The new refresh token ends when the session does, not later.
    # A float delta: the new `exp` rounds down to exactly the old one.
    remaining = timedelta(seconds=max(refresh_payload["exp"] - time.time(), 1))
    auth_time = int(refresh_payload.get(AUTH_TIME_CLAIM, 0))
    refresh = create_refresh_token(
        identity=user_id,
        additional_claims={"sid": sid, "jti": new_jti, AUTH_TIME_CLAIM: auth_time},
        expires_delta=remaining,
    )
    TOKENS_REFRESHED.inc()
    audit.record(audit.SESSION_REFRESHED, user_id=user_id, detail={"session_id": sid})
    return _access_token(user_id, sid, user.roles, user.locale, auth_time), refresh


# Who ends a session, by reason (the audit log's `by`).
ENDED_BY = {
    "logout": "user", "session_revoked": "user", "logout_all": "user",
    "email_changed": "user", "email_change_undone": "user", "account_deleted": "user",
    "admin": "operator", "deactivated": "operator", "operator_deleted": "operator",
    "refresh_reused": "system",
}


def _ended(user_id: str, sid: str, reason: str) -> None:
    emit(session_ended, user_id=int(user_id), session_id=sid, reason=reason)
    audit.record(
        audit.SESSION_ENDED, user_id=user_id,
        detail={"session_id": sid, "reason": reason, "by": ENDED_BY.get(reason, "system")},
    )


def end_session(user_id: str, sid: str, *, reason: str) -> bool:
    """End one sign-in everywhere: both of its tokens stop working at once.

    Returns False when the user had no live session with that id.
    """
    ended = store.revoke_sessions(user_id, [sid]) > 0
    if ended:
        TOKENS_REVOKED.labels(reason).inc()
        _ended(user_id, sid, reason)
    return ended


def end_all_sessions(user_id: str, *, reason: str, keep: str | None = None) -> int:
    """End every session of the user (but `keep`, if given); returns how many ended."""
    # The live ones only: listing prunes the ids whose record had expired (they ended then).
    sids = [record.sid for record in store.list_sessions(user_id) if record.sid != keep]
    ended = store.revoke_sessions(user_id, sids)
    if ended:
        TOKENS_REVOKED.labels(reason).inc(ended)
        for sid in sids:
            _ended(user_id, sid, reason)
    return ended


@dataclass(frozen=True)
class SessionInfo:
    """One live session as shown to its user (see SessionSchema)."""

    id: str
    created_at: str
    last_used_at: str
    ip: str
    user_agent: str
    method: str
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
            method=record.method,
            current=record.sid == current_sid,
        )
        for record in store.list_sessions(user_id)
    ]
