"""Everything stored about one user: exported on request, deleted with the account.

The export gathers the account row (every column, the host's own included), the
live sessions, the passkeys and the audit events. Deletion removes the row, its
passkeys, its sessions and every Redis key of the user (pending codes, sent-mail
markers, address changes); the audit events stay, pseudonymised, until
`flask audit prune` removes them (OTP_AUDIT_RETENTION_DAYS).
"""

from __future__ import annotations

import base64
from datetime import date, datetime
from typing import Any

from . import audit, code_store, email_change_store, session_store, sessions
from .codes import email_tag
from .errors import AccountNotFound
from .signals import emit, user_deleted
from .state import current_state, redis_client, user_store
from .users import iso

EXPORT_FORMAT = "flask-email-signin/account-export/1"


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes | memoryview):
        return base64.b64encode(bytes(value)).decode()
    return value


def export_account(user_id: int) -> dict[str, Any]:
    """The user's data as one JSON-ready document."""
    row = user_store().row(user_id)
    if row is None:
        raise AccountNotFound()
    state = current_state()
    state.audit.flush()  # this process's latest events belong in the export too
    tags = [email_tag(row["email"])]
    events = state.audit.store.events(user_id=user_id, email_tag=tags[0], limit=None)
    passkeys = state.passkeys.of_user(user_id) if state.passkeys is not None else []
    document = {
        "format": EXPORT_FORMAT,
        "account": {key: _json_value(value) for key, value in row.items()},
        "sessions": [
            {**info.__dict__} for info in sessions.list_sessions(str(user_id))
        ],
        "passkeys": [passkey.to_public_dict() for passkey in passkeys],
        "audit_events": [
            {key: _json_value(value) for key, value in event.to_dict().items()}
            for event in events
        ],
    }
    audit.record(audit.USER_EXPORTED, user_id=user_id)
    return document


def delete_account(user_id: int, *, by: str = "user") -> None:
    """Delete the account and everything of it; its audit events are pseudonymised.

    `by`: "user" (self-service) or "operator" (the CLI), kept in the audit log.
    """
    store = user_store()
    row = store.row(user_id)
    if row is None:
        raise AccountNotFound()
    email = str(row["email"])
    reason = "account_deleted" if by == "user" else "operator_deleted"
    sessions.end_all_sessions(str(user_id), reason=reason)
    forget_redis_state(user_id, email)
    state = current_state()
    if state.passkeys is not None:
        state.passkeys.delete_all(user_id)
    store.delete(user_id)
    state.audit.flush()  # so the pseudonymisation below sees every event of the user
    state.audit.store.pseudonymise(user_id, [email_tag(email)])
    # After the pseudonymisation: the id of a row that no longer exists is all it keeps.
    audit.record(audit.USER_DELETED, user_id=user_id, detail={"by": by})
    emit(user_deleted, user_id=user_id, email=email, by=by)


def forget_redis_state(user_id: int, email: str) -> int:
    """Delete every Redis key of the user; returns how many there were."""
    client = redis_client()
    tag = email_tag(email)
    keys = [code_store.code_key(tag), session_store.session_index_key(str(user_id))]
    for pattern in (
        code_store.mail_sent_key(tag, "*"),
        session_store.session_key(str(user_id), "*"),
        *email_change_store.key_patterns(user_id),
    ):
        keys.extend(client.scan_iter(match=pattern, count=1000))
    deleted = 0
    for key in keys:  # one by one: the keys of a user may sit in several cluster slots
        deleted += int(client.delete(key))
    return deleted
