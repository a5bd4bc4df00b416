"""An end-to-end check of the SMTP settings, with a diagnosis a person can act on.

It sends through Flask-Mail exactly as the worker does, so a passing check
means the worker's settings work. Diagnoses name settings and server replies,
never the password.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from collections.abc import Mapping
from typing import Any

from flask import current_app
from flask_mail import Message

from .mail_transport import BoundedConnection
from .settings import settings


def mail_settings() -> dict[str, Any]:
    """The settings Flask-Mail actually uses, by their config names (no password)."""
    state = current_app.extensions["mail"]
    return {
        "MAIL_SERVER": state.server,
        "MAIL_PORT": state.port,
        "MAIL_USE_TLS": state.use_tls,
        "MAIL_USE_SSL": state.use_ssl,
        "MAIL_USERNAME": state.username,
        "MAIL_DEFAULT_SENDER": state.default_sender,
        "OTP_MAIL_TIMEOUT_SECONDS": settings.mail_timeout,
    }


def send_test_email(recipient: str) -> None:
    """Connect, STARTTLS, log in and send exactly as the worker does; raise whatever fails."""
    message = Message(
        subject=f"{settings.app_name} mail settings test",
        recipients=[recipient],
        body="This message confirms that the sign-in service can send email.\n",
    )
    connection = BoundedConnection(current_app.extensions["mail"], settings.mail_timeout)
    connection.__enter__()
    host = connection.host
    try:
        connection.send(message)
        if host is not None:
            host.quit()
    finally:
        if host is not None:
            host.close()


def _reply(error: smtplib.SMTPResponseException) -> str:
    text = error.smtp_error
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return f"{error.smtp_code} {text}".strip()


def diagnose(error: BaseException, config: Mapping[str, Any]) -> str:
    """What most likely went wrong, and which setting to look at."""
    where = f"{config.get('MAIL_SERVER')}:{config.get('MAIL_PORT')}"
    tls = "MAIL_USE_TLS (STARTTLS, usually port 587)"
    ssl_ = "MAIL_USE_SSL (implicit TLS, usually port 465)"
    if isinstance(error, ConnectionRefusedError):
        return (
            f"Connection refused by {where}: nothing listens there. "
            "Check MAIL_SERVER and MAIL_PORT, and that the mail server is running."
        )
    if isinstance(error, socket.gaierror):
        return f"MAIL_SERVER={config.get('MAIL_SERVER')!r} does not resolve to an address."
    # smtplib reports a greeting or reply that never came as a dropped connection.
    timed_out = isinstance(error, TimeoutError) or (
        isinstance(error, smtplib.SMTPServerDisconnected)
        and isinstance(error.__context__, TimeoutError)
    )
    if timed_out:
        return (
            f"Timed out after OTP_MAIL_TIMEOUT_SECONDS={config.get('OTP_MAIL_TIMEOUT_SECONDS')} "
            f"waiting for {where} to answer. Check that MAIL_PORT is the server's SMTP port, that "
            f"no firewall drops the connection, and that the port speaks the TLS mode set: "
            f"compare {tls} with {ssl_}."
        )
    if isinstance(error, ssl.SSLCertVerificationError):
        return (
            f"The certificate of {where} is not trusted for that name "
            f"({error.verify_message}). Use the host name the certificate names."
        )
    if isinstance(error, ssl.SSLError):
        return (
            f"The TLS handshake with {where} failed ({error.reason}). {ssl_} needs a port "
            f"that speaks TLS at once; for STARTTLS set {tls} and MAIL_USE_SSL=false."
        )
    if isinstance(error, smtplib.SMTPAuthenticationError):
        return (
            f"{where} refused the login of MAIL_USERNAME={config.get('MAIL_USERNAME')!r}: "
            f"{_reply(error)}. Check MAIL_USERNAME and MAIL_PASSWORD."
        )
    if isinstance(error, smtplib.SMTPNotSupportedError):
        if "STARTTLS" in str(error):
            return (
                f"{where} does not offer STARTTLS, but MAIL_USE_TLS is on. Set "
                "MAIL_USE_TLS=false, or use the server's STARTTLS port."
            )
        return (
            f"{where} offers no login on this connection ({error}). Many servers allow it "
            f"only after TLS: set {tls} or {ssl_}; or unset MAIL_USERNAME."
        )
    if isinstance(error, smtplib.SMTPSenderRefused):
        return (
            f"{where} refused the sender MAIL_DEFAULT_SENDER="
            f"{config.get('MAIL_DEFAULT_SENDER')!r}: {_reply(error)}."
        )
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        replies = "; ".join(
            f"{rcpt}: {code} {msg.decode(errors='replace') if isinstance(msg, bytes) else msg}"
            for rcpt, (code, msg) in error.recipients.items()
        )
        return f"{where} refused the recipient ({replies})."
    if isinstance(error, smtplib.SMTPServerDisconnected):
        return (
            f"{where} closed the connection unexpectedly. If the port speaks TLS at once, "
            f"set {ssl_}."
        )
    if isinstance(error, smtplib.SMTPResponseException):
        return f"{where} answered {_reply(error)}."
    if isinstance(error, OSError):
        return f"Could not talk to {where}: {error.strerror or type(error).__name__}."
    return f"Sending failed: {type(error).__name__}: {error}"
