"""Blinker signals a host connects to, to react to sign-ins without patching the extension.

    from flask_email_signin import signals

    @signals.user_created.connect_via(app)
    def welcome(app, user_id, email, **_):
        send_welcome_email.delay(email)

Every signal's sender is the Flask app; arguments are keywords (accept `**_`, more may
be added). Receivers run in the request (or the worker, for `code_sent`), so keep
them quick and queue slow work. An exception in a receiver is logged and swallowed:
a host's hook never breaks a sign-in.

- `user_signed_in`: user_id, email, method (code, link, approval, passkey), session_id
- `user_created`: user_id, email (the first sign-in made the account)
- `session_ended`: user_id, session_id, reason (logout, session_revoked, logout_all,
  deactivated, refresh_reused)
- `code_sent`: email (the worker handed the sign-in email to the SMTP server)
- `passkey_registered`: user_id, passkey_id
- `passkey_deleted`: user_id, passkey_id
- `email_changed`: user_id, old_email, new_email, undone (True when the "this wasn't me"
  link put the old address back)
- `user_deleted`: user_id, email, by ("user", or "operator" from the CLI)

No signal carries a code, a link secret or a token.
"""

from __future__ import annotations

import logging
from typing import Any

from blinker import NamedSignal, Namespace
from flask import current_app

log = logging.getLogger(__name__)
_signals = Namespace()

user_signed_in = _signals.signal("user_signed_in")
user_created = _signals.signal("user_created")
session_ended = _signals.signal("session_ended")
code_sent = _signals.signal("code_sent")
passkey_registered = _signals.signal("passkey_registered")
passkey_deleted = _signals.signal("passkey_deleted")
email_changed = _signals.signal("email_changed")
user_deleted = _signals.signal("user_deleted")


def emit(signal: NamedSignal, **arguments: Any) -> None:
    """Send `signal` from the current app; a failing receiver is logged, never raised."""
    if not signal.receivers:
        return
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    for receiver in signal.receivers_for(app):
        try:
            receiver(app, **arguments)
        except Exception:
            log.exception("a %s receiver failed", signal.name)
