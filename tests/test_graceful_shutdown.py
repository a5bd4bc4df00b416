"""SIGTERM mid-load loses no sign-in and no email.

A rolling deploy takes node A out of the load balancer and sends SIGTERM to its
gunicorn and to a Celery worker while both are busy: gunicorn lets its in-flight
requests finish (here a sign-in and a code request whose bodies are still arriving),
and the worker finishes the email it is sending (acks late: anything it had not
started stays queued for the worker that replaces it). Every code is then emailed
exactly once, and every sign-in works on node B.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from live_stack import (
    WebNode,
    WorkerNode,
    node_environment,
    private_redis,
    stop_all,
    wait_until,
)

from app.devtools.inbox import Inbox, plain_text, start_inbox
from app.devtools.redis_server import free_port
from support import new_email

# Starts processes of its own (servers, workers or a browser): `pytest -m "not live"` skips it.
pytestmark = pytest.mark.live


class SlowInbox(Inbox):
    """A real SMTP server that takes `delay` seconds to accept each message."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.receiving = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.receiving.set()
        await asyncio.sleep(self.delay)
        return await super().handle_DATA(server, session, envelope)


class SlowRequest:
    """A POST whose body arrives in two parts, so it is in flight while we signal."""

    def __init__(self, port: int, path: str, body: dict[str, str], source: str) -> None:
        data = json.dumps(body).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
        ).encode()
        self.sock = socket.create_connection(
            ("127.0.0.1", port), timeout=30, source_address=(source, 0)
        )
        self.sock.sendall(head + data[:8])
        self.rest = data[8:]
        self.local_port = int(self.sock.getsockname()[1])

    def finish(self) -> tuple[int, dict[str, Any]]:
        self.sock.sendall(self.rest)
        response = http.client.HTTPResponse(self.sock)
        try:
            response.begin()
            return response.status, json.loads(response.read())
        finally:
            response.close()
            self.sock.close()


@pytest.fixture
def slow_inbox() -> Iterator[SlowInbox]:
    """An SMTP server of this test's own, slow enough to catch a worker mid-send."""
    box = SlowInbox(delay=0.4)
    box.port = free_port()  # type: ignore[attr-defined]
    controller = start_inbox(box, box.port)  # type: ignore[attr-defined]
    try:
        yield box
    finally:
        controller.stop()


def read_code(inbox: Inbox, email: str) -> str:
    match = re.search(r"\b(\d{6})\b", plain_text(inbox.wait_for(email, timeout=30)[0]))
    assert match, "no code in the email"
    return match.group(1)


def test_sigterm_mid_load_loses_no_email_and_no_sign_in(
    app: Flask, database_url: str, slow_inbox: SlowInbox, tmp_path: Path
) -> None:
    started: list[WebNode | WorkerNode] = []
    with private_redis(tmp_path / "redis") as shared:
        env = node_environment(
            redis_url=f"{shared}/0", broker_url=f"{shared}/1", database_url=database_url,
            mail_port=slow_inbox.port,  # type: ignore[attr-defined]
        )
        try:
            a, b = WebNode(env, tmp_path, "node-a"), WebNode(env, tmp_path, "node-b")
            old_worker = WorkerNode(env, tmp_path, "worker-old", pool="prefork")
            started += [a, b, old_worker]
            a.wait_ready()
            b.wait_ready()
            old_worker.wait_ready()

            # A code whose sign-in will be in flight on A when A is told to stop.
            signing_in = new_email("inflight-verify")
            assert b.request("POST", "/auth/request-otp", {"email": signing_in},
                             source="127.0.9.1")[0] == 202
            code = read_code(slow_inbox, signing_in)

            # Load: codes requested through A queue up behind the slow mail server.
            load = [new_email("load") for _ in range(5)]
            for n, email in enumerate(load):
                status, _ = a.request("POST", "/auth/request-otp", {"email": email},
                                      source=f"127.0.9.{n + 10}")
                assert status == 202
            slow_inbox.receiving.clear()
            assert slow_inbox.receiving.wait(timeout=15), "the worker never started a send"

            # Two requests in flight on A: a sign-in and a code request, bodies half sent.
            verify = SlowRequest(a.port, "/auth/verify-otp",
                                 {"email": signing_in, "otp": code}, "127.0.9.2")
            requesting = new_email("inflight-request")
            request = SlowRequest(a.port, "/auth/request-otp",
                                  {"email": requesting}, "127.0.9.3")
            wait_until(
                lambda: a.holds_connections_from({verify.local_port, request.local_port}),
                15, "node A to accept both in-flight requests",
            )

            # The balancer has already stopped sending new work to A; now the signals.
            a.signal()
            old_worker.signal()
            new_worker = WorkerNode(env, tmp_path, "worker-new")
            started.append(new_worker)
            time.sleep(0.3)

            verified_status, verified = verify.finish()
            requested_status, _ = request.finish()
            assert verified_status == 200, verified
            assert requested_status == 202

            assert a.process.wait(timeout=30) == 0, a.log()
            assert old_worker.process.wait(timeout=30) == 0, old_worker.log()
            assert "Warm shutdown" in old_worker.log()

            # Every code arrives exactly once, and each of them signs in on B.
            everyone = [*load, requesting]
            codes = {email: read_code(slow_inbox, email) for email in everyone}
            broker = redis.Redis.from_url(f"{shared}/1")
            with broker:
                wait_until(
                    lambda: broker.llen("celery") == 0 and broker.hlen("unacked") == 0,
                    30, "the queue to drain",
                )
            assert [len(slow_inbox.to(email)) for email in [signing_in, *everyone]] == [1] * 7
            for n, email in enumerate(everyone):
                status, body = b.request("POST", "/auth/verify-otp",
                                         {"email": email, "otp": codes[email]},
                                         source=f"127.0.9.{n + 40}")
                assert status == 200, body
            me_status, me = b.request("GET", "/auth/me", token=verified["access_token"])
            assert me_status == 200 and me["email"] == signing_in
        finally:
            stop_all([node.process for node in started])
