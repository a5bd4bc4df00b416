"""A deploy under continuous load refuses no connection and fails no request.

The procedure the README documents ("Deployment"): install the new code or settings, then
`kill -HUP` gunicorn's master. The master keeps its listening socket (nothing is ever
refused), reads gunicorn.conf.py again, starts new workers, which import the app afresh
(`preload_app` is off), and stops the old ones gracefully: each finishes what it has
accepted. Connections that arrive while the new workers boot wait in the listen backlog.
A stop-and-start instead left about a second in which connections were refused.
"""

from __future__ import annotations

import http.client
import json
import signal
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from flask import Flask
from live_stack import (
    ROOT,
    HTTPEndpoint,
    ProxyNode,
    WebNode,
    served_environment,
    wait_until,
)

from app.devtools.inbox import Inbox
from support import new_email

pytestmark = pytest.mark.live

LOAD_THREADS = 3
RELOADS = 2


@pytest.fixture
def node(
    app: Flask, redis_url: str, database_url: str, inbox: Inbox, tmp_path: Path
) -> Iterator[WebNode]:
    """A gunicorn node of this test's own (it is reloaded), 2 processes of 4 threads."""
    env = served_environment(redis_url, database_url, inbox, TRUSTED_PROXY_COUNT="1")
    web = WebNode(env, tmp_path, "reloaded", "--workers", "2")
    try:
        yield web.wait_ready()
    finally:
        web.stop()


class Load:
    """Threads sending requests on fresh connections until stopped, counting outcomes."""

    def __init__(self, endpoint: HTTPEndpoint) -> None:
        self.endpoint = endpoint
        self.outcomes: Counter[str] = Counter()
        self.failures: list[str] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [
            threading.Thread(target=self.run, args=(n,), daemon=True)
            for n in range(LOAD_THREADS)
        ]

    def run(self, n: int) -> None:
        calls: list[tuple[str, Callable[[], str]]] = [
            ("healthz", lambda: self.send("GET", "/healthz", None, 200)),
            ("document", lambda: self.send("GET", "/auth/openapi.json", None, 200)),
            # A POST that reaches Redis: nginx never retries it on another connection.
            ("verify", lambda: self.send(
                "POST", "/auth/verify-otp", {"email": new_email("reload"), "otp": "000000"}, 401
            )),
        ]
        turn = n
        while not self.stopping.is_set():
            name, call = calls[turn % len(calls)]
            turn += 1
            try:
                detail = call()
                outcome = "ok" if detail == "" else "failed"
            except ConnectionRefusedError:
                outcome, detail = "refused", "connection refused"
            except (OSError, http.client.HTTPException) as error:
                outcome, detail = "failed", f"{type(error).__name__}: {error}"
            with self.lock:
                self.outcomes[outcome] += 1
                if outcome != "ok":
                    self.failures.append(f"{name}: {detail}")

    def send(self, method: str, path: str, body: object, expected: int) -> str:
        """One request: what went wrong, or "" when the answer is the expected one."""
        connection = http.client.HTTPConnection("127.0.0.1", self.endpoint.port, timeout=30)
        try:
            headers = {"Connection": "close", "Content-Type": "application/json"}
            data = json.dumps(body).encode() if body is not None else None
            connection.request(method, path, body=data, headers=headers)
            response = connection.getresponse()
            raw = response.read()
            return "" if response.status == expected else f"{response.status} {raw[:200]!r}"
        finally:
            connection.close()

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def total(self) -> int:
        with self.lock:
            return sum(self.outcomes.values())


def worker_pids(node: WebNode) -> set[int]:
    return {child.pid for child in psutil.Process(node.process.pid).children()}


def reload_gracefully(node: WebNode) -> None:
    """kill -HUP, then wait until only new workers remain and they answer."""
    old = worker_pids(node)
    node.signal(signal.SIGHUP)

    def replaced() -> bool:
        current = worker_pids(node)
        return len(current) == 2 and not current & old

    wait_until(replaced, 60, "the old workers to be replaced")


@pytest.mark.parametrize("through", ["gunicorn", "nginx"])
def test_a_reload_under_load_refuses_nothing_and_fails_nothing(
    node: WebNode, tmp_path: Path, through: str, record_property: Callable[[str, object], None]
) -> None:
    assert "preload_app" not in (ROOT / "gunicorn.conf.py").read_text()  # HUP reloads code
    proxy = ProxyNode(node.port, tmp_path).wait_ready() if through == "nginx" else None
    endpoint: HTTPEndpoint = proxy or node
    try:
        with Load(endpoint) as load:
            wait_until(lambda: load.total() >= 30, 30, "the load to get going")
            for _ in range(RELOADS):
                before = load.total()
                reload_gracefully(node)
                # Requests served by the new workers, before the next reload.
                wait_until(lambda b=before: load.total() >= b + 30, 30,  # type: ignore[misc]
                           "requests after the reload")
        outcomes = dict(load.outcomes)
        summary = (
            f"{RELOADS} x kill -HUP through {through} under {LOAD_THREADS} load threads: "
            f"{load.total()} requests, {outcomes.get('refused', 0)} refused, "
            f"{outcomes.get('failed', 0)} failed"
        )
        record_property("measured", summary)
        assert load.failures == [], summary
        assert outcomes.get("ok", 0) == load.total()
    finally:
        if proxy is not None:
            proxy.stop()
