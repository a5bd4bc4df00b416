"""The audit log: authentication events recorded without a database round trip on requests.

`record(...)` stamps an event with its time, client IP, user agent and request id
and appends it to an in-process buffer: a few microseconds, no I/O. A daemon
thread of each process writes the buffer to `email_signin_audit_events` (see
audit_store) in one batch every OTP_AUDIT_FLUSH_SECONDS, hands the batch to the
listeners (webhooks), and stops after a quiet minute (the next event starts it
again). The buffer is also written at interpreter exit, so a graceful stop of
gunicorn or of a worker keeps every event; a SIGKILLed process loses at most
its last interval. A database outage keeps events buffered (up to
OTP_AUDIT_MAX_BUFFERED, oldest dropped first, counted in the logs).

No event holds a code, a link secret or a token; the address is kept only as
its keyed tag (codes.email_tag). Listeners also see the address itself.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from collections import deque
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flask import Flask, current_app, has_app_context, has_request_context, request

from .audit_store import MAX_USER_AGENT_LENGTH, AuditStore
from .logs import current_request_id

log = logging.getLogger(__name__)

# The events, by name (also the webhook event types; README "Audit log" lists them).
CODE_REQUESTED = "code.requested"
CODE_SENT = "code.sent"
CODE_SEND_FAILED = "code.send_failed"
CODE_VERIFIED = "code.verified"
CODE_WRONG = "code.wrong"
CODE_LOCKED = "code.locked"
LINK_USED = "link.used"
LINK_APPROVED = "link.approved"
LINK_DENIED = "link.denied"
SESSION_STARTED = "session.started"
SESSION_REFRESHED = "session.refreshed"
SESSION_REFRESH_REUSED = "session.refresh_reused"
SESSION_ENDED = "session.ended"
USER_CREATED = "user.created"
SIGNUP_REFUSED = "signup.refused"
EMAIL_CHANGE_REQUESTED = "email.change_requested"
EMAIL_CHANGED = "email.changed"
EMAIL_CHANGE_UNDONE = "email.change_undone"
USER_EXPORTED = "user.exported"
USER_DELETED = "user.deleted"
PASSKEY_REGISTERED = "passkey.registered"
PASSKEY_DELETED = "passkey.deleted"

EVENTS = (
    CODE_REQUESTED, CODE_SENT, CODE_SEND_FAILED, CODE_VERIFIED, CODE_WRONG, CODE_LOCKED,
    LINK_USED, LINK_APPROVED, LINK_DENIED, SESSION_STARTED, SESSION_REFRESHED,
    SESSION_REFRESH_REUSED, SESSION_ENDED, USER_CREATED, SIGNUP_REFUSED,
    EMAIL_CHANGE_REQUESTED, EMAIL_CHANGED, EMAIL_CHANGE_UNDONE, USER_EXPORTED, USER_DELETED,
    PASSKEY_REGISTERED, PASSKEY_DELETED,
)

QUIET_ROUNDS_BEFORE_STOP = 60
# A burst this large is written at once rather than at the end of the interval.
FLUSH_EARLY_AT = 500


@dataclass
class Recorded:
    """One event on its way to the table (`row`) and the listeners (`email` too)."""

    row: dict[str, Any]
    email: str | None = None


Listener = Callable[[list[Recorded]], None]


@dataclass(eq=False)
class AuditLog:
    """One app's buffer and flusher; kept in the app's extension state."""

    app: weakref.ref[Flask]
    store: AuditStore
    enabled: bool
    flush_seconds: float
    max_buffered: int
    listeners: list[Listener] = field(default_factory=list)
    _buffer: deque[Recorded] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _flush_lock: threading.Lock = field(default_factory=threading.Lock)
    _wake: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _pid: int = 0
    _dropped: int = 0

    def __post_init__(self) -> None:
        _live_logs.add(self)

    def record(
        self,
        event: str,
        *,
        user_id: int | str | None = None,
        email: str | None = None,
        email_tag: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Buffer one event of this request (or task, or command)."""
        if not self.enabled and not self.listeners:
            return
        if email_tag is None and email is not None:
            from .codes import email_tag as tag_of  # codes needs the app's secret key
            email_tag = tag_of(email)
        ip = user_agent = ""
        if has_request_context():
            ip = request.remote_addr or ""
            user_agent = request.user_agent.string[:MAX_USER_AGENT_LENGTH]
        row = {
            "at": datetime.now(UTC),
            "event": event,
            "user_id": int(user_id) if user_id is not None else None,
            "email_tag": email_tag,
            "ip": ip,
            "user_agent": user_agent,
            "request_id": (current_request_id() or "")[:64],
            "detail": detail or {},
        }
        buffer = self._buffer
        if len(buffer) >= self.max_buffered:
            buffer.popleft()
            self._dropped += 1
        # No lock: deque appends and pops are atomic, and the flusher takes events one
        # by one, so an event appended while it writes waits for the next batch.
        buffer.append(Recorded(row, email))
        if self._thread is None:
            self._start_flusher()
        elif len(buffer) == FLUSH_EARLY_AT:
            self._wake.set()

    def flush(self) -> int:
        """Write what is buffered now, then hand it to the listeners; returns how many."""
        with self._flush_lock:
            batch = []
            buffer = self._buffer
            while buffer:
                batch.append(buffer.popleft())
            dropped, self._dropped = self._dropped, 0
            if dropped:
                log.warning("audit log buffer full: %d oldest events dropped", dropped)
            if not batch:
                return 0
            app = self.app()
            if app is None:
                return 0
            # The current context only if it is this app's: another app's would lend its
            # database and settings to these events.
            own_context = has_app_context() and current_app._get_current_object() is app  # type: ignore[attr-defined]
            with nullcontext() if own_context else app.app_context():
                if self.enabled:
                    try:
                        self.store.insert([recorded.row for recorded in batch])
                    except Exception as error:  # the database is down, or the table missing
                        log.warning("audit events not written yet: %s", type(error).__name__)
                        self._requeue(batch)
                        return 0
                for listener in self.listeners:
                    try:
                        listener(batch)
                    except Exception:
                        log.exception("an audit listener failed")
            return len(batch)

    def _requeue(self, batch: list[Recorded]) -> None:
        room = self.max_buffered - len(self._buffer)
        kept = batch[-room:] if room > 0 else []
        self._dropped += len(batch) - len(kept)
        self._buffer.extendleft(reversed(kept))

    def _start_flusher(self) -> None:
        """Start this process's flusher thread (again after a quiet minute, or a fork)."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run_flusher, name="email-signin-audit", daemon=True
                )
                self._pid = os.getpid()
                self._thread.start()

    def _run_flusher(self) -> None:
        quiet = 0
        while True:
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            quiet = 0 if self.flush() else quiet + 1
            if quiet < QUIET_ROUNDS_BEFORE_STOP or self._buffer:
                continue
            with self._lock:
                # Given up first, then checked: an event appended meanwhile either sees
                # no thread (and starts one) or is seen here (and this one carries on).
                self._thread = None
                if not self._buffer:
                    return
                self._thread = threading.current_thread()
                quiet = 0

    def after_fork_in_child(self) -> None:
        """A child starts empty: its parent still owns (and writes) what it buffered."""
        self._buffer = deque()
        self._lock, self._flush_lock = threading.Lock(), threading.Lock()
        self._wake, self._thread, self._dropped = threading.Event(), None, 0


_live_logs: weakref.WeakSet[AuditLog] = weakref.WeakSet()


def _flush_all_at_exit() -> None:
    for audit_log in list(_live_logs):
        if audit_log._pid == os.getpid():
            audit_log.flush()


def _children_start_empty() -> None:
    for audit_log in list(_live_logs):
        audit_log.after_fork_in_child()


_process_hooks_installed = False


def install_process_hooks() -> None:
    """Flush at exit and reset after fork, installed once (by the first init_app)."""
    global _process_hooks_installed
    if not _process_hooks_installed:
        _process_hooks_installed = True
        atexit.register(_flush_all_at_exit)
        os.register_at_fork(after_in_child=_children_start_empty)


def record(event: str, **fields: Any) -> None:
    """Buffer an event on the current app's audit log (see AuditLog.record)."""
    from .state import current_state

    current_state().audit.record(event, **fields)
