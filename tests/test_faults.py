"""Faults with real processes: Redis, SMTP, the worker and the broker fail and return.

Each test starts the servers it breaks (a private Redis, its own aiosmtpd, worker
subprocesses `celery -A worker worker`), so the suite's own servers never go down.
Every wait is bounded. Durations are printed and recorded (`record_property`), never
asserted: speed is measured in bench/, not here.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from live_stack import wait_until

from app import create_app
from app.devtools.inbox import Inbox, plain_text, start_inbox
from app.devtools.redis_server import free_port, start_server
from flask_email_signin.code_store import code_key
from flask_email_signin.codes import email_tag
from support import (
    SUITE_JWT_SECRET_KEY,
    SUITE_SECRET_KEY,
    StallingInbox,
    error_code,
    make_config,
    new_email,
)

# Starts processes of its own (servers, workers or a browser): `pytest -m "not live"` skips it.
pytestmark = pytest.mark.live

ROOT = Path(__file__).resolve().parent.parent
# Each test's worker gets a broker database of its own on the suite's Redis, so the
# suite's in-process worker (broker database 1) never takes these tests' tasks.
BROKER_DB = {"smtp": 3, "sigkill": 4, "state": 5, "sweep": 6}


def timed(call: Callable[[], Any], limit: float = 15.0) -> tuple[Any, float]:
    """Run `call` in a thread; fail (not hang) if it has not returned after `limit` s."""
    result: dict[str, Any] = {}

    def run() -> None:
        started = time.monotonic()
        try:
            result["value"] = call()
        except BaseException as error:  # re-raised in the test's own thread
            result["error"] = error
        result["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(limit)
    assert not thread.is_alive(), f"the request still hangs after {limit}s"
    if "error" in result:
        raise result["error"]
    return result["value"], result["seconds"]


def queued_code(broker_url: str, email: str) -> str:
    """The code in the queued email task for `email` (no worker consumes this broker)."""
    broker = redis.Redis.from_url(broker_url)
    for raw in broker.lrange("celery", 0, -1):
        message = json.loads(raw)
        _args, kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        if kwargs.get("email") == email:
            return str(kwargs["code"])
    raise AssertionError(f"no queued task for {email}")


def code_in(message: Any) -> str:
    """The 6-digit code in a received email."""
    return next(word for word in plain_text(message).split() if word.isdigit() and len(word) == 6)


def assert_unavailable(response: Any) -> None:
    assert response.status_code == 503, response.get_data()
    assert error_code(response) == "service_unavailable"
    assert int(response.headers["Retry-After"]) > 0


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A Redis server this test may stop, freeze and restart (same port)."""
    port = free_port()
    server = {"port": port, "url": f"redis://127.0.0.1:{port}"}
    server["process"] = start_server(port, tmp_path / "redis-0")
    yield server
    process: subprocess.Popen[bytes] = server["process"]
    if process.poll() is None:
        os.kill(process.pid, signal.SIGCONT)
        process.kill()
        process.wait(timeout=10)


def test_redis_down_answers_503_after_the_retry_budget_and_the_service_recovers(
    app: Flask,
    private_redis: dict[str, Any],
    database_url: str,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    url, process = private_redis["url"], private_redis["process"]
    # State, rate limits and broker all on this Redis; `app` (the suite's) migrated the database.
    # A 1 s retry budget: each request below waits that long for Redis, then answers 503.
    client = create_app(make_config(url, database_url, 1, OTP_REDIS_RETRY_SECONDS=1)).test_client()
    email = new_email()
    assert client.post("/auth/request-otp", json={"email": email}).status_code == 202
    signed_in = client.post(
        "/auth/verify-otp", json={"email": email, "otp": queued_code(f"{url}/1", email)}
    )
    assert signed_in.status_code == 200
    bearer = {"Authorization": f"Bearer {signed_in.get_json()['access_token']}"}
    client._cookies.clear()

    def each_endpoint() -> dict[str, Any]:
        return {
            "request-otp": lambda: client.post("/auth/request-otp", json={"email": new_email()}),
            "verify-otp": lambda: client.post(
                "/auth/verify-otp", json={"email": email, "otp": "123456"}
            ),
            "me": lambda: client.get("/auth/me", headers=bearer),
        }

    durations: dict[str, float] = {}
    # 1. Frozen (SIGSTOP): connections open but nothing answers; the socket timeout decides.
    os.kill(process.pid, signal.SIGSTOP)
    for name, call in each_endpoint().items():
        response, durations[f"frozen {name}"] = timed(call)
        assert_unavailable(response)
    os.kill(process.pid, signal.SIGCONT)
    assert client.get("/auth/me", headers=bearer).status_code == 200  # back, data intact

    # 2. Killed: connections refused.
    process.kill()
    process.wait(timeout=10)
    for name, call in each_endpoint().items():
        response, durations[f"down {name}"] = timed(call)
        assert_unavailable(response)

    # 3. Back on the same port, empty (no persistence): the app reconnects by itself;
    # sessions it lost are refused (fail closed), and nothing blocks a new sign-in.
    private_redis["process"] = start_server(private_redis["port"], tmp_path / "redis-1")
    refused = client.get("/auth/me", headers=bearer)
    assert refused.status_code == 401 and error_code(refused) == "token_revoked"
    assert client.post("/auth/request-otp", json={"email": email}).status_code == 202
    again = client.post(
        "/auth/verify-otp", json={"email": email, "otp": queued_code(f"{url}/1", email)}
    )
    assert again.status_code == 200
    new_bearer = {"Authorization": f"Bearer {again.get_json()['access_token']}"}
    assert client.get("/auth/me", headers=new_bearer).status_code == 200

    for name, seconds in durations.items():
        record_property(f"503 after Redis {name} (s)", round(seconds, 3))
    print("Redis fault -> 503 in seconds:", {k: round(v, 3) for k, v in durations.items()})


def test_broker_down_at_request_time_is_503_and_spends_no_cooldown(
    redis_url: str,
    database_url: str,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    port = free_port()
    broker = start_server(port, tmp_path / "broker-0")
    app = create_app(
        make_config(redis_url, database_url, 1, OTP_CELERY_BROKER_URL=f"redis://127.0.0.1:{port}/0")
    )
    client = app.test_client()
    try:
        assert client.post("/auth/request-otp", json={"email": new_email()}).status_code == 202
        broker.kill()
        broker.wait(timeout=10)

        email = new_email()
        response, seconds = timed(
            lambda: client.post("/auth/request-otp", json={"email": email})
        )
        assert_unavailable(response)
        # The code was withdrawn and the cooldown not spent...
        state = redis.Redis.from_url(app.config["OTP_REDIS_URL"])
        record = state.hgetall(code_key(_tag(app, email)))
        assert b"c" not in record and b"s" not in record, record

        # ...so once the broker is back, the user can ask again at once.
        broker = start_server(port, tmp_path / "broker-1")
        retried = client.post("/auth/request-otp", json={"email": email})
        assert retried.status_code == 202, retried.get_json()
        assert queued_code(f"redis://127.0.0.1:{port}/0", email)
    finally:
        broker.kill()
        broker.wait(timeout=10)
    record_property("503 after broker down (s)", round(seconds, 3))
    print(f"broker down -> 503 in {seconds:.3f}s")


def _tag(app: Flask, email: str) -> str:
    with app.app_context():
        return email_tag(email)


class WorkerProcess:
    """`celery -A worker worker` (solo pool) configured only by its environment."""

    def __init__(self, log_path: Path, **env: str) -> None:
        self.log_path = log_path
        environment = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("OTP_", "MAIL_", "JWT_", "REDIS_", "CELERY_", "DATABASE_"))
        }
        environment.update(
            APP_ENV="testing",
            PYTHONPATH=str(ROOT),
            SECRET_KEY=SUITE_SECRET_KEY,
            JWT_SECRET_KEY=SUITE_JWT_SECRET_KEY,
            MAIL_SERVER="127.0.0.1",
            **env,
        )
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "worker", "worker", "--pool", "solo",
                 "--loglevel", "INFO", "--without-heartbeat", "--without-mingle",
                 "--without-gossip", "--hostname", f"{log_path.stem}@%h"],
                cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 30.0) -> None:
        def seen() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited:\n{self.log()[-3000:]}")
            return text in self.log()

        wait_until(seen, timeout, f"{text!r} in the worker log")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@pytest.fixture
def worker_processes() -> Iterator[list[WorkerProcess]]:
    """Workers a test starts; all stopped afterwards, whatever happened."""
    workers: list[WorkerProcess] = []
    yield workers
    for worker in workers:
        worker.stop()


def flush_db(redis_url: str, db: int) -> None:
    """Empty one of the suite's own broker databases (the suite's server, its data)."""
    redis.Redis.from_url(f"{redis_url}/{db}").flushdb()


def test_smtp_down_then_back_delivers_with_retries_and_drops_expired_codes(
    app: Flask,
    redis_url: str,
    database_url: str,
    tmp_path: Path,
    worker_processes: list[WorkerProcess],
) -> None:
    broker_url = f"{redis_url}/{BROKER_DB['smtp']}"
    flush_db(redis_url, BROKER_DB["smtp"])
    port = free_port()
    box = Inbox()
    start_inbox(box, port).stop()  # the mail server ran on this port, and is now down

    worker = WorkerProcess(
        tmp_path / "smtp-worker.log",
        REDIS_URL=f"{redis_url}/0", CELERY_BROKER_URL=broker_url,
        DATABASE_URL=database_url, MAIL_PORT=str(port),
    )
    worker_processes.append(worker)
    worker.wait_for_log(" ready.")  # a 2 s code must not expire in the queue meanwhile
    settings = {"OTP_CELERY_BROKER_URL": broker_url}
    short_lived = create_app(
        make_config(redis_url, database_url, port, OTP_TTL_SECONDS=2, **settings)
    )
    client = create_app(make_config(redis_url, database_url, port, **settings)).test_client()

    # A code that dies before the server returns is dropped, not sent late.
    expired = new_email()
    assert short_lived.test_client().post(
        "/auth/request-otp", json={"email": expired}
    ).status_code == 202
    worker.wait_for_log("dropped: mail server down until the code expired")

    # A live code is retried with backoff until the server is back.
    email = new_email()
    assert client.post("/auth/request-otp", json={"email": email}).status_code == 202
    worker.wait_for_log("retry in")
    controller = start_inbox(box, port)  # back, on the same port
    try:
        message = box.wait_for(email, timeout=30)[0]
        code = code_in(message)
        verified = client.post("/auth/verify-otp", json={"email": email, "otp": code})
        assert verified.status_code == 200
        assert box.to(expired) == []  # its task ended before this one was sent
        assert len(box.to(email)) == 1
        assert code not in worker.log()
    finally:
        controller.stop()


def test_worker_killed_mid_send_is_redelivered_and_sends_once(
    app: Flask,
    redis_url: str,
    database_url: str,
    tmp_path: Path,
    worker_processes: list[WorkerProcess],
) -> None:
    broker_url = f"{redis_url}/{BROKER_DB['sigkill']}"
    flush_db(redis_url, BROKER_DB["sigkill"])
    broker = redis.Redis.from_url(broker_url)
    port = free_port()
    box = StallingInbox()
    controller = start_inbox(box, port)
    env = {
        "REDIS_URL": f"{redis_url}/0", "CELERY_BROKER_URL": broker_url,
        "DATABASE_URL": database_url, "MAIL_PORT": str(port),
        # Unacknowledged tasks go back to the queue after 1 s (the default is 300 s).
        "CELERY_VISIBILITY_TIMEOUT": "1",
    }
    client: FlaskClient = create_app(
        make_config(redis_url, database_url, port, OTP_CELERY_BROKER_URL=broker_url)
    ).test_client()
    try:
        first = WorkerProcess(tmp_path / "worker-1.log", **env)
        worker_processes.append(first)
        email = new_email()
        assert client.post("/auth/request-otp", json={"email": email}).status_code == 202
        assert box.stalled.wait(30), "the worker never reached DATA"
        # The exact message the worker holds, unacknowledged (acks_late).
        (in_flight,) = broker.hvals("unacked")
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(timeout=10)
        assert box.to(email) == []

        time.sleep(1.5)  # older than the visibility timeout: a new worker restores it
        second = WorkerProcess(tmp_path / "worker-2.log", **env)
        worker_processes.append(second)
        message = box.wait_for(email, timeout=30)[0]
        code = code_in(message)
        verified = client.post("/auth/verify-otp", json={"email": email, "otp": code})
        assert verified.status_code == 200

        # The same message delivered once more after a completed send: no second copy.
        raw_message, _exchange, _routing_key = json.loads(in_flight)
        broker.lpush("celery", json.dumps(raw_message))
        sentinel = new_email("sentinel")  # tasks run in order: it comes after the copy
        assert client.post("/auth/request-otp", json={"email": sentinel}).status_code == 202
        box.wait_for(sentinel, timeout=30)
        assert len(box.to(email)) == 1
        wait_until(lambda: not broker.hlen("unacked"), 15, "acknowledgement of every task")
        for worker in (first, second):
            assert code not in worker.log()
    finally:
        controller.stop()


def test_a_live_worker_sends_a_killed_workers_email_within_the_visibility_timeout(
    app: Flask,  # the suite's database, migrated
    redis_url: str,
    database_url: str,
    tmp_path: Path,
    worker_processes: list[WorkerProcess],
) -> None:
    """No restart needed: a running worker's periodic sweep restores the unacknowledged task."""
    broker_url = f"{redis_url}/{BROKER_DB['sweep']}"
    flush_db(redis_url, BROKER_DB["sweep"])
    port = free_port()
    box = StallingInbox()
    controller = start_inbox(box, port)
    env = {
        "REDIS_URL": f"{redis_url}/0", "CELERY_BROKER_URL": broker_url,
        "DATABASE_URL": database_url, "MAIL_PORT": str(port),
        "CELERY_VISIBILITY_TIMEOUT": "2",  # sweeps every second (a tenth, at least 1 s)
    }
    client: FlaskClient = create_app(
        make_config(redis_url, database_url, port, OTP_CELERY_BROKER_URL=broker_url)
    ).test_client()
    try:
        first = WorkerProcess(tmp_path / "sweep-1.log", **env)
        worker_processes.append(first)
        first.wait_for_log(" ready.")
        email = new_email()
        assert client.post("/auth/request-otp", json={"email": email}).status_code == 202
        assert box.stalled.wait(30), "the worker never reached DATA"
        second = WorkerProcess(tmp_path / "sweep-2.log", **env)
        worker_processes.append(second)
        second.wait_for_log(" ready.")
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(timeout=10)
        killed_at = time.monotonic()
        message = box.wait_for(email, timeout=30)[0]
        delay = time.monotonic() - killed_at
        # Visibility (2 s) + one sweep (1 s) + the send; kombu's own default waits ~100 s.
        assert delay < 8, f"redelivered after {delay:.1f} s"
        code = code_in(message)
        assert client.post("/auth/verify-otp", json={"email": email, "otp": code}).status_code \
            == 200
        assert len(box.to(email)) == 1
    finally:
        controller.stop()


def test_state_store_stalled_in_the_worker_is_retried_and_the_email_arrives(
    app: Flask,  # the suite's database, migrated
    redis_url: str,
    database_url: str,
    inbox: Inbox,
    tmp_path: Path,
    worker_processes: list[WorkerProcess],
) -> None:
    """A Redis error inside the email task is retried while the code lives, not fatal."""
    broker_url = f"{redis_url}/{BROKER_DB['state']}"
    flush_db(redis_url, BROKER_DB["state"])
    port = free_port()
    state = start_server(port, tmp_path / "state")
    state_url = f"redis://127.0.0.1:{port}/0"
    stalled_app = create_app(make_config(
        redis_url, database_url, inbox.port,  # type: ignore[attr-defined]
        OTP_REDIS_URL=state_url, OTP_CELERY_BROKER_URL=broker_url,
    ))
    client = stalled_app.test_client()
    try:
        email = new_email()
        assert client.post("/auth/request-otp", json={"email": email}).status_code == 202
        # Stalled, not gone: the code is still there once the server answers again.
        os.kill(state.pid, signal.SIGSTOP)
        worker = WorkerProcess(
            tmp_path / "state-worker.log", REDIS_URL=state_url, CELERY_BROKER_URL=broker_url,
            DATABASE_URL=database_url, MAIL_PORT=str(inbox.port),  # type: ignore[attr-defined]
            REDIS_SOCKET_TIMEOUT="0.5",
        )
        worker_processes.append(worker)
        worker.wait_for_log("state store unavailable")
        os.kill(state.pid, signal.SIGCONT)
        code = code_in(inbox.wait_for(email, timeout=30)[0])
        signed_in = client.post("/auth/verify-otp", json={"email": email, "otp": code})
        assert signed_in.status_code == 200
        assert worker.log().count("login email sent") == 1
    finally:
        os.kill(state.pid, signal.SIGCONT)
        state.kill()
        state.wait(timeout=10)
