"""A command whose reply is lost is retried, and the state-changing scripts do not apply
twice: issuing a code, using it, and rotating a refresh token each recognise their own
retry. The fault is real: a TCP proxy in front of the suite's Redis forwards the command,
then closes the connection instead of passing the reply on. Each script is run once
before the fault, so the lost reply is the script's own, not a NOSCRIPT error."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from app import create_app
from app.devtools.inbox import Inbox
from app.devtools.redis_server import free_port
from flask_email_signin import code_store, session_store
from support import AuthActions, error_code, make_config, new_email


class ReplyDroppingProxy:
    """Forwards Redis traffic; once armed with a script, drops the reply to its next call."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port, self.port = upstream_port, free_port()
        self.armed: bytes | None = None
        self.dropped = 0
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, sha: str) -> None:
        with self._lock:
            self.armed = sha.encode()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            doomed = threading.Event()
            threading.Thread(target=self._requests, args=(client, upstream, doomed),
                             daemon=True).start()
            threading.Thread(target=self._replies, args=(upstream, client, doomed),
                             daemon=True).start()

    def _requests(self, client: socket.socket, upstream: socket.socket,
                  doomed: threading.Event) -> None:
        while data := _recv(client):
            with self._lock:
                if self.armed is not None and self.armed in data:
                    self.armed = None
                    doomed.set()  # this command goes through; its reply will not
            upstream.sendall(data)
        _close(client, upstream)

    def _replies(self, upstream: socket.socket, client: socket.socket,
                 doomed: threading.Event) -> None:
        while data := _recv(upstream):
            if doomed.is_set():
                self.dropped += 1
                break
            client.sendall(data)
        _close(client, upstream)

    def close(self) -> None:
        self._server.close()


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""


def _close(*sockets: socket.socket) -> None:
    for sock in sockets:
        try:
            sock.close()
        except OSError:
            pass


@pytest.fixture(scope="module")
def proxy(redis_url: str) -> Iterator[ReplyDroppingProxy]:
    lossy = ReplyDroppingProxy(int(redis_url.rsplit(":", 1)[1]))
    yield lossy
    lossy.close()


@pytest.fixture(scope="module")
def lossy_app(proxy: ReplyDroppingProxy, redis_url: str, database_url: str,
              inbox: Inbox) -> Flask:
    """The suite's app, but its state store reached through the proxy (the broker and the
    worker are the suite's own, so emails are sent as usual)."""
    config = make_config(redis_url, database_url, inbox.port,  # type: ignore[attr-defined]
                         OTP_REDIS_URL=f"redis://127.0.0.1:{proxy.port}/0")
    return create_app(config)


@pytest.fixture
def lossy(lossy_app: Flask, inbox: Inbox, celery_worker: object) -> AuthActions:
    return AuthActions(lossy_app.test_client(), inbox, lossy_app)


def test_a_code_request_whose_reply_is_lost_issues_one_code_and_one_email(
    lossy: AuthActions, proxy: ReplyDroppingProxy
) -> None:
    assert lossy.request_code(new_email("warm-up")).status_code == 202  # script loaded
    email, before = new_email("lost-issue"), proxy.dropped
    proxy.arm(code_store._ISSUE.sha)
    asked = lossy.request_code(email)
    assert proxy.dropped == before + 1  # the fault happened
    assert asked.status_code == 202, asked.get_json()  # not 429 resend_cooldown
    code = lossy.read_code_from_inbox(email)
    assert lossy.verify(email, code).status_code == 200
    assert len(lossy.inbox.to(email)) == 1


def test_a_verify_whose_reply_is_lost_signs_in_once(
    lossy: AuthActions, proxy: ReplyDroppingProxy
) -> None:
    email = new_email("lost-verify")
    assert lossy.request_code(email).status_code == 202
    code = lossy.read_code_from_inbox(email)
    assert lossy.verify(new_email("warm-up"), code).status_code == 401  # script loaded
    before = proxy.dropped
    proxy.arm(code_store._CONSUME.sha)
    verified = lossy.verify(email, code)
    assert proxy.dropped == before + 1
    assert verified.status_code == 200, verified.get_json()  # not 401 otp_used
    # The code is used all the same: another call (another nonce) is told so.
    assert error_code(lossy.verify(email, code)) == "otp_used"


def test_a_refresh_whose_reply_is_lost_keeps_the_session(
    lossy: AuthActions, proxy: ReplyDroppingProxy
) -> None:
    lossy.sign_in(new_email("lost-refresh"))
    warm_up = lossy.client.post("/auth/refresh", headers=lossy.csrf_header("refresh"))
    assert warm_up.status_code == 200  # script loaded
    before = proxy.dropped
    proxy.arm(session_store._ROTATE_REFRESH.sha)
    refreshed = lossy.client.post("/auth/refresh", headers=lossy.csrf_header("refresh"))
    assert proxy.dropped == before + 1
    assert refreshed.status_code == 200, refreshed.get_json()  # not refresh_token_reused
    assert lossy.client.get("/auth/me").status_code == 200
    # The session goes on: the next refresh, with the token the retried call handed out.
    again = lossy.client.post("/auth/refresh", headers=lossy.csrf_header("refresh"))
    assert again.status_code == 200


def test_with_retries_off_a_lost_reply_is_a_clean_503(
    redis_url: str, database_url: str, inbox: Inbox, proxy: ReplyDroppingProxy,
    celery_worker: object,
) -> None:
    config = make_config(redis_url, database_url, inbox.port,  # type: ignore[attr-defined]
                         OTP_REDIS_URL=f"redis://127.0.0.1:{proxy.port}/0",
                         OTP_REDIS_RETRY_SECONDS=0)
    app = create_app(config)
    auth = AuthActions(app.test_client(), inbox, app)
    email = new_email("no-retry")
    assert auth.request_code(email).status_code == 202
    code = auth.read_code_from_inbox(email)
    assert auth.verify(new_email("warm-up"), code).status_code == 401  # script loaded
    proxy.arm(code_store._CONSUME.sha)
    failed: Any = auth.verify(email, code)
    assert failed.status_code == 503 and error_code(failed) == "service_unavailable"
