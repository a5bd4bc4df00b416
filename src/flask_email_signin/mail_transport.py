"""Mail transport through the app's Flask-Mail, with a bounded SMTP timeout and a kept connection.

Flask-Mail opens SMTP connections without a timeout, and a process-wide
`socket.setdefaulttimeout` would reach every other socket of the host's worker;
`BoundedConnection` gives the SMTP socket its own (OTP_MAIL_TIMEOUT_SECONDS).

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
from typing import Any

from flask import current_app
from flask_mail import Connection, Message

from .settings import settings
from .tracing import smtp_span

# Mail servers drop idle clients (often after 60-300 s); reconnect before they do.
SMTP_IDLE_SECONDS = 30.0

_kept = threading.local()


@dataclass
class _KeptConnection:
    settings: tuple[object, ...]
    connection: Connection
    used_at: float


class BoundedConnection(Connection):
    """Flask-Mail's connection, its every SMTP wait bounded by `timeout` seconds."""

    def __init__(self, mail: Any, timeout: float) -> None:
        super().__init__(mail)
        self.timeout = timeout

    def configure_host(self) -> smtplib.SMTP:
        """Flask-Mail's steps, with a timeout, closing the socket when a step fails."""
        smtp_class = smtplib.SMTP_SSL if self.mail.use_ssl else smtplib.SMTP
        host = smtp_class(self.mail.server, self.mail.port, timeout=self.timeout)
        try:
            if self.mail.use_tls:
                host.starttls()
            if self.mail.username and self.mail.password:
                host.login(self.mail.username, self.mail.password)
        except BaseException:
            host.close()
            raise
        return host


def _settings() -> tuple[object, ...]:
    """What a kept connection was opened with; the pid keeps forked workers apart."""
    state = current_app.extensions["mail"]
    return (
        os.getpid(), state.server, state.port, state.username, state.password,
        state.use_tls, state.use_ssl, state.suppress, settings.mail_timeout,
    )


def _open() -> Connection:
    connection = BoundedConnection(current_app.extensions["mail"], settings.mail_timeout)
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
    mail = current_app.extensions["mail"]
    with smtp_span(str(mail.server), int(mail.port)):
        _send(message)
