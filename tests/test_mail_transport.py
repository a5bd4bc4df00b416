"""The worker's SMTP connection: reused across emails, reopened when the server drops it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from flask import Flask

from app import create_app
from app.devtools.redis_server import free_port
from flask_email_signin.mail_transport import close_kept_connection, send_email
from support import make_config


class PeerRecorder:
    """SMTP handler noting which client connection (peer address) sent each message."""

    def __init__(self) -> None:
        self.peers: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.peers.append(session.peer)
        return "250 Message accepted for delivery"


class MailServer:
    """A real SMTP server on a fixed port that can be restarted (dropping its clients)."""

    def __init__(self) -> None:
        self.port, self.recorder = free_port(), PeerRecorder()
        self.controller = self._start()

    def _start(self) -> Controller:
        controller = Controller(self.recorder, hostname="127.0.0.1", port=self.port)
        controller.start()
        return controller

    def restart(self) -> None:
        self.controller.stop()
        self.controller = self._start()

    def stop(self) -> None:
        self.controller.stop()


@pytest.fixture
def mail_server() -> Iterator[MailServer]:
    server = MailServer()
    yield server
    server.stop()


@pytest.fixture
def mail_app(redis_url: str, database_url: str, mail_server: MailServer) -> Iterator[Flask]:
    """An app whose mail goes to `mail_server`."""
    app = create_app(make_config(redis_url, database_url, mail_server.port))
    yield app
    with app.app_context():
        close_kept_connection()


def send(app: Flask, recipient: str) -> None:
    with app.app_context():
        send_email(subject="Hello", recipient=recipient, text_body="hi", html_body="<p>hi</p>")


def test_consecutive_emails_share_one_smtp_connection(
    mail_app: Flask, mail_server: MailServer
) -> None:
    for n in range(3):
        send(mail_app, f"reuse-{n}@example.com")
    peers = mail_server.recorder.peers
    assert len(peers) == 3 and len(set(peers)) == 1


def test_a_connection_the_server_dropped_is_reopened(
    mail_app: Flask, mail_server: MailServer
) -> None:
    send(mail_app, "before@example.com")
    mail_server.restart()  # drops the kept connection, as a server's idle timeout would
    send(mail_app, "after@example.com")
    peers = mail_server.recorder.peers
    assert len(peers) == 2 and peers[0] != peers[1]
