"""Generic mail transport through Flask-Mail; areas compose their own messages.

Each worker process keeps one SMTP connection open and reuses it across
tasks: connecting (and STARTTLS/login on a real server) costs more than the
message itself. A connection idle for longer than `SMTP_IDLE_SECONDS`, or
made with other settings, is replaced; one the server has dropped is
reopened once, and any other failure closes it so the next send starts clean.
"""

from __future__ import annotations

import os
import smtplib
import threading
import time
from dataclasses import dataclass

from flask import current_app
from flask_mail import Connection, Message

from .extensions import mail

# Mail servers drop idle clients (often after 60-300 s); reconnect before they do.
SMTP_IDLE_SECONDS = 30.0

_kept = threading.local()


@dataclass
class _KeptConnection:
    settings: tuple[object, ...]
    connection: Connection
    used_at: float


def _settings() -> tuple[object, ...]:
    """What a kept connection was opened with; the pid keeps forked workers apart."""
    state = current_app.extensions["mail"]
    return (
        os.getpid(), state.server, state.port, state.username, state.password,
        state.use_tls, state.use_ssl, state.suppress,
    )


def _open() -> Connection:
    connection = mail.connect()
    connection.__enter__()
    return connection


def close_kept_connection() -> None:
    """Quit this thread's kept SMTP connection, if any (errors ignored: it is going away)."""
    kept: _KeptConnection | None = getattr(_kept, "value", None)
    _kept.value = None
    if kept is not None and kept.connection.host is not None:
        try:
            kept.connection.host.quit()
        except (smtplib.SMTPException, OSError):
            kept.connection.host.close()


def _send(message: Message) -> None:
    settings, now = _settings(), time.monotonic()
    kept: _KeptConnection | None = getattr(_kept, "value", None)
    if kept is not None and (kept.settings != settings or now - kept.used_at > SMTP_IDLE_SECONDS):
        close_kept_connection()
        kept = None
    if kept is not None:
        try:
            kept.connection.send(message)
        except smtplib.SMTPServerDisconnected:
            close_kept_connection()  # dropped while idle: nothing was sent, try a fresh one
        except BaseException:
            close_kept_connection()
            raise
        else:
            kept.used_at = now
            return
    connection = _open()
    _kept.value = _KeptConnection(settings, connection, now)
    try:
        connection.send(message)
    except BaseException:
        close_kept_connection()
        raise


def send_email(*, subject: str, recipient: str, text_body: str, html_body: str) -> None:
    """Send one multipart (plain text + HTML) message, synchronously.

    Only called from Celery tasks, never on the request path.
    """
    message = Message(subject=subject, recipients=[recipient], body=text_body, html=html_body)
    _send(message)
