"""Outgoing webhooks: signed, posted by a real worker to a real local receiver, retried,
dead-lettered; their settings checked at start-up."""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from standardwebhooks import Webhook

from app import create_app
from app.devtools.inbox import Inbox
from app.devtools.redis_server import free_port
from flask_email_signin import UnsafeSettingError, WebhookSettingError, audit
from flask_email_signin.webhook_store import DEAD, DEAD_COUNT
from flask_email_signin.webhooks import DELIVER_WEBHOOK, queue_webhooks
from support import (
    SUITE_JWT_SECRET_KEY,
    SUITE_SECRET_KEY,
    AuthActions,
    make_config,
    new_email,
)

ROOT = Path(__file__).resolve().parent.parent

ALWAYS = 10**9


def new_secret(size: int = 32) -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(size)).decode()


@dataclass
class Delivery:
    """One POST the receiver got, and what it answered."""

    path: str
    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """A real HTTP server on a free port that records every POST.

    Each path answers 500 to the first `fail_first[path]` attempts of every message
    (counted by webhook-id), then 204.
    """

    def __init__(self, fail_first: dict[str, int]) -> None:
        self.fail_first = fail_first
        self.deliveries: list[Delivery] = []
        self.changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver.changed:
                    tried = sum(1 for d in receiver.deliveries if d.path == self.path
                                and d.headers.get("webhook-id") == headers.get("webhook-id"))
                    status = 500 if tried < receiver.fail_first.get(self.path, 0) else 204
                    receiver.deliveries.append(Delivery(self.path, headers, body, status))
                    receiver.changed.notify_all()
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_for(
        self, path: str, match: Callable[[Delivery], bool], count: int = 1, timeout: float = 30
    ) -> list[Delivery]:
        """The first `count` deliveries to `path` that `match`; fails after `timeout`."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                found = [d for d in self.deliveries if d.path == path and match(d)]
                if len(found) >= count:
                    return found[:count]
                left = deadline - time.monotonic()
                assert left > 0, f"{path} got {len(found)} of {count} webhooks"
                self.changed.wait(left)

    def to(self, path: str) -> list[Delivery]:
        with self.changed:
            return [d for d in self.deliveries if d.path == path]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


BROKER_DB, STATE_DB = 8, 9
RETRY_DELAYS = "0.2,0.5"
SECRETS = {path: new_secret() for path in ("/all", "/sessions", "/flaky", "/down")}
SUBSCRIPTIONS: dict[str, list[str] | None] = {
    "/all": None,
    "/sessions": ["session.*"],
    "/flaky": [audit.USER_CREATED],
    "/down": [audit.USER_EXPORTED],
}


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    """The local receiver: /flaky fails each message once, /down always."""
    server = Receiver({"/flaky": 1, "/down": ALWAYS})
    yield server
    server.stop()


class WorkerProcess:
    """`celery -A worker worker` (solo pool), configured only by its environment.

    A process of its own: two in-process test workers share kombu's event loop, and
    the countdown of a retry then never fires.
    """

    def __init__(self, log_path: Path, **env: str) -> None:
        self.log_path = log_path
        environment = {
            key: value for key, value in os.environ.items()
            if not key.startswith(("OTP_", "MAIL_", "JWT_", "REDIS_", "CELERY_", "DATABASE_"))
        }
        environment.update(APP_ENV="testing", PYTHONPATH=str(ROOT), SECRET_KEY=SUITE_SECRET_KEY,
                           JWT_SECRET_KEY=SUITE_JWT_SECRET_KEY, MAIL_SERVER="127.0.0.1", **env)
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
        deadline = time.monotonic() + timeout
        while text not in self.log():
            assert self.process.poll() is None, f"worker exited:\n{self.log()[-3000:]}"
            assert time.monotonic() < deadline, f"{text!r} not in the worker log"
            time.sleep(0.05)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def hooks_worker(
    app: Flask, redis_url: str, database_url: str, inbox: Inbox, receiver: Receiver,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[WorkerProcess]:
    """A worker process whose app has four webhook endpoints and short retry delays.

    Its state and broker are Redis databases of its own, so it alone runs its tasks and
    its dead letters are its own. (`app` has migrated the schema.)
    """
    for db in (BROKER_DB, STATE_DB):
        redis.Redis.from_url(f"{redis_url}/{db}").flushdb()  # the suite's server, its data
    worker = WorkerProcess(
        tmp_path_factory.mktemp("hooks") / "hooks-worker.log",
        REDIS_URL=f"{redis_url}/{STATE_DB}", CELERY_BROKER_URL=f"{redis_url}/{BROKER_DB}",
        DATABASE_URL=database_url, MAIL_PORT=str(inbox.port),  # type: ignore[attr-defined]
        OTP_WEBHOOKS=json.dumps(endpoints(receiver)), OTP_WEBHOOK_RETRY_DELAYS=RETRY_DELAYS,
    )
    worker.wait_for_log(" ready.")
    yield worker
    worker.stop()


@pytest.fixture(scope="module")
def hooks_app(
    hooks_worker: WorkerProcess, redis_url: str, database_url: str, inbox: Inbox,
    receiver: Receiver,
) -> Iterator[Flask]:
    """The web side of the same settings: its requests queue what the worker sends."""
    hooks = create_app(make_config(
        redis_url, database_url, inbox.port,  # type: ignore[attr-defined]
        OTP_REDIS_URL=f"{redis_url}/{STATE_DB}", OTP_CELERY_BROKER_URL=f"{redis_url}/{BROKER_DB}",
        OTP_WEBHOOKS=endpoints(receiver), OTP_WEBHOOK_RETRY_DELAYS=RETRY_DELAYS,
    ))
    yield hooks
    hooks.extensions["email_signin"].redis.close()


def endpoints(receiver: Receiver) -> list[dict[str, Any]]:
    made = []
    for path, events in SUBSCRIPTIONS.items():
        endpoint: dict[str, Any] = {"url": receiver.url(path), "secret": SECRETS[path]}
        if events is not None:
            endpoint["events"] = events
        made.append(endpoint)
    return made


def flush(app: Flask) -> None:
    """Hand the buffered audit events to the webhook listener now."""
    app.extensions["email_signin"].audit.flush()


def of(email: str, event: str) -> Callable[[Delivery], bool]:
    return lambda d: d.json["type"] == event and d.json["data"]["email"] == email


def verified(delivery: Delivery) -> Any:
    """The body, after its Standard Webhooks signature checks out with the path's secret."""
    return Webhook(SECRETS[delivery.path]).verify(delivery.body, delivery.headers)


@pytest.mark.live
def test_sign_in_sends_signed_webhooks_without_secrets(
    hooks_app: Flask, inbox: Inbox, receiver: Receiver
) -> None:
    auth = AuthActions(hooks_app.test_client(), inbox, hooks_app)
    email = new_email("hooks")
    assert auth.request_code(email).status_code == 202
    code = auth.read_code_from_inbox(email)
    signed_in = auth.verify(email, code)
    assert signed_in.status_code == 200
    tokens = [v for k, v in signed_in.get_json().items() if k.endswith("token")]
    assert tokens
    flush(hooks_app)

    created = receiver.wait_for("/all", of(email, audit.USER_CREATED))[0]
    started = receiver.wait_for("/all", of(email, audit.SESSION_STARTED))[0]
    for delivery in (created, started):
        body = verified(delivery)
        assert delivery.headers["webhook-id"].startswith("msg_")
        assert delivery.headers["content-type"] == "application/json"
        assert set(body) == {"type", "timestamp", "data"}
        assert body["data"]["email"] == email
        assert isinstance(body["data"]["user_id"], int)
        text = delivery.body.decode()
        assert code not in text
        assert not any(token in text for token in tokens)
    assert verified(started)["data"]["detail"]["method"] == "code"
    assert verified(started)["data"]["ip"] == "127.0.0.1"
    # One message per endpoint and event: distinct ids.
    assert created.headers["webhook-id"] != started.headers["webhook-id"]

    # A signature made with another endpoint's secret does not verify.
    with pytest.raises(Exception, match="signature"):
        Webhook(SECRETS["/sessions"]).verify(started.body, started.headers)


@pytest.mark.live
def test_endpoints_get_only_the_events_they_subscribe_to(
    hooks_app: Flask, inbox: Inbox, receiver: Receiver
) -> None:
    auth = AuthActions(hooks_app.test_client(), inbox, hooks_app)
    email = new_email("subscribed")
    auth.sign_in(email)
    flush(hooks_app)

    verified(receiver.wait_for("/sessions", of(email, audit.SESSION_STARTED))[0])
    # Queued after every event of the sign-in, in the order recorded: once /all has the
    # last one, any other endpoint's webhook of this sign-in has been queued before it.
    receiver.wait_for("/all", of(email, audit.SESSION_STARTED))
    all_types = {d.json["type"] for d in receiver.to("/all") if d.json["data"]["email"] == email}
    assert {audit.CODE_REQUESTED, audit.CODE_VERIFIED, audit.USER_CREATED} <= all_types
    assert all(d.json["type"].startswith("session.") for d in receiver.to("/sessions"))
    assert all(d.json["type"] == audit.USER_CREATED for d in receiver.to("/flaky"))
    assert not any(d.json["data"]["email"] == email for d in receiver.to("/down"))


@pytest.mark.live
def test_a_failed_delivery_is_retried_with_the_same_id(
    hooks_app: Flask, hooks_worker: WorkerProcess, inbox: Inbox, receiver: Receiver
) -> None:
    auth = AuthActions(hooks_app.test_client(), inbox, hooks_app)
    email = new_email("flaky")
    auth.sign_in(email)
    flush(hooks_app)

    first, second = receiver.wait_for("/flaky", of(email, audit.USER_CREATED), count=2)
    assert (first.status, second.status) == (500, 204)
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert first.body == second.body
    # Each attempt is signed (with its own timestamp) and verifies.
    assert verified(first) == verified(second)
    msg_id = first.headers["webhook-id"]
    assert f"webhook {msg_id} (user.created) to {receiver.url('/flaky')} failed (HTTP 500); " \
        "retry in 0.2s" in hooks_worker.log()


@pytest.mark.live
def test_a_webhook_failing_every_attempt_is_dead_lettered(
    hooks_app: Flask, hooks_worker: WorkerProcess, receiver: Receiver
) -> None:
    state = redis.Redis.from_url(hooks_app.config["OTP_REDIS_URL"])
    dead_before = int(state.get(DEAD_COUNT) or 0)
    with hooks_app.app_context():
        audit.record(audit.USER_EXPORTED, user_id=4242)
    flush(hooks_app)

    attempts = receiver.wait_for(
        "/down", lambda d: d.json["data"]["user_id"] == 4242, count=3
    )  # the first, then one per retry delay
    msg_id = attempts[0].headers["webhook-id"]
    assert {d.headers["webhook-id"] for d in attempts} == {msg_id}
    for delivery in attempts:
        verified(delivery)

    deadline = time.monotonic() + 30
    while not (records := [json.loads(r) for r in state.lrange(DEAD, 0, -1)
                           if json.loads(r)["id"] == msg_id]):
        assert time.monotonic() < deadline, "no dead letter recorded"
        time.sleep(0.05)
    assert records[0] == {
        "id": msg_id, "url": receiver.url("/down"), "type": audit.USER_EXPORTED,
        "attempts": 3, "status": 500, "error": "HTTP 500", "at": records[0]["at"],
    }
    assert int(state.get(DEAD_COUNT) or 0) == dead_before + 1
    assert SECRETS["/down"] not in state.lrange(DEAD, 0, -1)[0].decode()

    runner = hooks_app.test_cli_runner()
    with hooks_app.app_context():  # not the suite app's, which pytest-flask has pushed
        listed = runner.invoke(args=["audit", "webhooks"])
        assert listed.exit_code == 0, listed.output
        assert msg_id in listed.output and "3 attempt(s), last: HTTP 500" in listed.output
        assert f"{dead_before + 1} dead webhook(s) in all" in listed.output
        cleared = runner.invoke(args=["audit", "webhooks", "--clear"])
        assert cleared.exit_code == 0
    assert state.llen(DEAD) == 0 and state.get(DEAD_COUNT) is None
    state.close()

    log = hooks_worker.log()
    assert f"webhook {msg_id} (user.exported) to {receiver.url('/down')} dead after 3" in log
    # Neither a secret nor a payload reaches the worker's log.
    assert not any(secret in log for secret in SECRETS.values())
    assert "@example.com" not in log and '"payload"' not in log


@pytest.mark.live
def test_a_webhook_whose_endpoint_was_removed_is_dropped(
    hooks_app: Flask, hooks_worker: WorkerProcess
) -> None:
    with hooks_app.app_context():
        hooks_app.extensions["email_signin"].publisher.publish(
            DELIVER_WEBHOOK,
            kwargs={"url": f"http://127.0.0.1:{free_port()}/gone", "msg_id": "msg_gone",
                    "event": audit.USER_CREATED, "payload": "{}"},
            expires=60, kwargsrepr="{}",
        )
    hooks_worker.wait_for_log("webhook msg_gone dropped: ")


@pytest.fixture
def build(redis_url: str, database_url: str, inbox: Inbox) -> Iterator[Callable[..., Flask]]:
    """Builds apps with webhook settings; closes what they opened."""
    made: list[Flask] = []

    def build_app(**overrides: Any) -> Flask:
        made.append(create_app(make_config(redis_url, database_url, inbox.port, **overrides)))
        return made[-1]

    yield build_app
    for built in made:
        built.extensions["email_signin"].redis.close()


GOOD = {"url": "https://hooks.example.com/in", "secret": new_secret()}


@pytest.mark.parametrize(
    ("webhooks", "message"),
    [
        ([{**GOOD, "events": ["session.begun"]}], "unknown event 'session.begun'"),
        ([{**GOOD, "events": ["nothing.*"]}], "unknown event 'nothing.*'"),
        ([{**GOOD, "events": []}], "non-empty list"),
        ([{**GOOD, "events": "session.started"}], "non-empty list"),
        ([{**GOOD, "event": ["session.started"]}], "unknown key"),
        ([{**GOOD, "url": "ftp://hooks.example.com/in"}], "http:// or https://"),
        ([{**GOOD, "url": "https://user:pw@hooks.example.com/in"}], "credentials"),
        ([{**GOOD, "secret": "hunter2"}], "whsec_"),
        ([{**GOOD, "secret": "whsec_not*base64"}], "not base64"),
        ([{**GOOD, "secret": new_secret(8)}], "holds 8 bytes"),
        ([GOOD, GOOD], "listed twice"),
        ("[{", "not valid JSON"),
        ({"url": GOOD["url"]}, "must be a list"),
    ],
)
def test_bad_webhook_settings_are_refused_at_start(
    build: Callable[..., Flask], webhooks: Any, message: str
) -> None:
    with pytest.raises(WebhookSettingError, match="OTP_WEBHOOKS") as raised:
        build(OTP_WEBHOOKS=webhooks)
    assert message in str(raised.value)


def test_bad_retry_delays_are_refused(build: Callable[..., Flask]) -> None:
    with pytest.raises(WebhookSettingError, match="OTP_WEBHOOK_RETRY_DELAYS"):
        build(OTP_WEBHOOKS=[GOOD], OTP_WEBHOOK_RETRY_DELAYS="5,soon")


def test_json_settings_from_the_environment_are_read(build: Callable[..., Flask]) -> None:
    hooks = build(OTP_WEBHOOKS=json.dumps([{**GOOD, "events": ["user.*"]}]),
                  OTP_WEBHOOK_RETRY_DELAYS="1,2,3")
    assert queue_webhooks in hooks.extensions["email_signin"].audit.listeners
    plain = build()
    assert queue_webhooks not in plain.extensions["email_signin"].audit.listeners


@pytest.mark.parametrize(
    ("url", "refused"),
    [
        ("http://hooks.example.com/in", True),
        ("https://hooks.example.com/in", False),
        ("http://127.0.0.1:9000/in", False),  # never leaves the machine
    ],
)
def test_production_refuses_http_webhooks_off_this_machine(
    build: Callable[..., Flask], url: str, refused: bool
) -> None:
    production = {"OTP_PRODUCTION": True, "JWT_COOKIE_SECURE": True,
                  "OTP_WEBHOOKS": [{**GOOD, "url": url}]}
    if refused:
        with pytest.raises(UnsafeSettingError, match=r"OTP_WEBHOOKS: .* is not https://"):
            build(**production)
    else:
        build(**production)
