"""Changing the account's address: prove the new one, tell the old one, let it undo.

1. A signed-in user, recently authenticated (step-up), asks for a new address. A
   code and a link go to the new address. If that address already has an account,
   it gets a notice instead, and the answer is the same (no one learns who is
   registered).
2. The right code (or the link) changes the address at once (unique, so a race
   cannot give two accounts one address), ends every session but the one that
   asked, and mails the old address a notice with a single-use "this wasn't me"
   link.
3. Within OTP_EMAIL_CHANGE_UNDO_SECONDS that link puts the old address back, ends
   every session, removes passkeys registered since the change, and voids the
   other undo links.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from flask import current_app

from . import audit, sessions
from . import email_change_store as store
from .codes import email_tag, generate_code, generate_link_secret, secret_digest
from .errors import (
    EmailChangeCodeInvalid,
    EmailChangeLinkInvalid,
    EmailChangeLocked,
    EmailChangeNotPending,
    EmailTaken,
    EmailUnchanged,
    ServiceUnavailable,
)
from .i18n import ngettext
from .settings import settings
from .signals import email_changed, emit
from .state import PAGES_BLUEPRINT, current_state, user_store
from .tasks import queue_account_email

log = logging.getLogger(__name__)

CODE_PURPOSE = "email-change-code"
LINK_PURPOSE = "email-change-link"
UNDO_PURPOSE = "email-change-undo"
CONFIRM_ENDPOINT = f"{PAGES_BLUEPRINT}.email_change_confirm_page"
UNDO_ENDPOINT = f"{PAGES_BLUEPRINT}.email_change_undo_page"


def _owner(user_id: int) -> str:
    """What the digests of a change are bound to: the account, not an address."""
    return f"user:{user_id}"


def page_url(endpoint: str, user_id: int, secret: str) -> str | None:
    """A link to one of the change pages (secret in the fragment, as sign-in links)."""
    if endpoint not in current_app.view_functions:
        return None
    path = current_app.url_map.bind("").build(endpoint, {"user_id": user_id})
    return f"{settings.link_base_url}{path}#{secret}"


@dataclass(frozen=True)
class ChangeRequested:
    expires_in: int


def request_email_change(
    user_id: int, current_email: str, new_email: str, *, session_id: str, locale: str
) -> ChangeRequested:
    if new_email == current_email:
        raise EmailUnchanged()
    ttl = settings.code_ttl
    expires_at = int(time.time()) + ttl
    taken = user_store().exists(new_email)
    try:
        if taken:
            # Same answer; the address's owner learns that someone tried.
            store.forget_pending(user_id)
            queue_account_email("email_change_address_taken", new_email, expires_at, locale)
        else:
            code, link_secret = generate_code(settings.code_length), generate_link_secret()
            store.start(
                user_id, new_email=new_email,
                code_digest=secret_digest(CODE_PURPOSE, _owner(user_id), code),
                link_digest=secret_digest(LINK_PURPOSE, _owner(user_id), link_secret),
                session_id=session_id, ttl=ttl,
            )
            queue_account_email(
                "email_change_confirm", new_email, expires_at, locale,
                code=code, link_url=page_url(CONFIRM_ENDPOINT, user_id, link_secret) or "",
            )
    except ServiceUnavailable:
        store.forget_pending(user_id)
        raise
    audit.record(audit.EMAIL_CHANGE_REQUESTED, user_id=user_id, email=new_email,
                 detail={"session_id": session_id})
    return ChangeRequested(expires_in=ttl)


def confirm_with_code(user_id: int, code: str) -> str:
    """Apply the pending change with its code; returns the new address."""
    confirmation = store.confirm(
        user_id, by="c", digest=secret_digest(CODE_PURPOSE, _owner(user_id), code),
        max_attempts=settings.max_attempts,
    )
    if confirmation.status == "wrong":
        raise EmailChangeCodeInvalid(
            ngettext(
                "That code is not correct. %(num)s try left.",
                "That code is not correct. %(num)s tries left.",
                confirmation.tries_left,
            ),
            details={"attempts_left": confirmation.tries_left},
        )
    if confirmation.status == "locked":
        raise EmailChangeLocked()
    if confirmation.status != "ok":
        raise EmailChangeNotPending()
    return _apply(user_id, confirmation)


def confirm_with_link(user_id: int, secret: str) -> str:
    """Apply the pending change from the emailed link; returns the new address."""
    confirmation = store.confirm(
        user_id, by="l", digest=secret_digest(LINK_PURPOSE, _owner(user_id), secret),
        max_attempts=settings.max_attempts,
    )
    if confirmation.status != "ok":
        raise EmailChangeLinkInvalid()
    return _apply(user_id, confirmation)


def _apply(user_id: int, confirmation: store.Confirmation) -> str:
    users = user_store()
    row = users.profile(user_id)
    if row is None:
        raise EmailChangeNotPending()
    old_email, new_email = str(row.email), confirmation.new_email
    if not users.change_email(user_id, new_email, expected=old_email):
        raise EmailTaken()
    changed_at = int(time.time())
    sessions.end_all_sessions(str(user_id), reason="email_changed",
                              keep=confirmation.session_id or None)
    undo_secret = secrets.token_urlsafe(32)
    undo_window = int(current_app.config["OTP_EMAIL_CHANGE_UNDO_SECONDS"])
    try:
        store.save_undo(user_id, _undo_digest(user_id, undo_secret), old_email=old_email,
                        new_email=new_email, changed_at=changed_at, ttl=undo_window)
        queue_account_email(
            "email_change_notice", old_email, changed_at + undo_window, row.locale or "",
            new_email=new_email, link_url=page_url(UNDO_ENDPOINT, user_id, undo_secret) or "",
            hours=undo_window // 3600,
        )
    except ServiceUnavailable:
        # The change stands (the new address was proven); the old one could not be told.
        log.error("address changed, but the notice to the old address was not queued")
    audit.record(audit.EMAIL_CHANGED, user_id=user_id, email=new_email,
                 detail={"old_email_tag": email_tag(old_email)})
    emit(email_changed, user_id=user_id, old_email=old_email, new_email=new_email,
         undone=False)
    return new_email


def undo_email_change(user_id: int, secret: str) -> str:
    """Put the old address back from the "this wasn't me" link; returns it."""
    undo = store.take_undo(user_id, _undo_digest(user_id, secret))
    if undo is None:
        raise EmailChangeLinkInvalid()
    users = user_store()
    row = users.profile(user_id)
    if row is None:
        raise EmailChangeLinkInvalid()
    current = str(row.email)
    if current != undo.old_email and not users.change_email(
        user_id, undo.old_email, expected=current
    ):
        raise EmailTaken()
    store.forget_undos(user_id)
    store.forget_pending(user_id)
    sessions.end_all_sessions(str(user_id), reason="email_change_undone")
    passkeys = current_state().passkeys
    removed = 0
    if passkeys is not None:
        removed = passkeys.delete_all(
            user_id, created_after=datetime.fromtimestamp(undo.changed_at, UTC)
        )
    audit.record(audit.EMAIL_CHANGE_UNDONE, user_id=user_id, email=undo.old_email,
                 detail={"passkeys_removed": removed})
    emit(email_changed, user_id=user_id, old_email=current, new_email=undo.old_email,
         undone=True)
    return undo.old_email


def _undo_digest(user_id: int, secret: str) -> str:
    return secret_digest(UNDO_PURPOSE, _owner(user_id), secret).hex()
