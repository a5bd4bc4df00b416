"""Chaos under load: hundreds of sign-ins while workers, Redis and the mail server fail.

Two gunicorn nodes and two Celery workers (prefork, started with the Procfile's command)
share one Redis for state and broker; an aiosmtpd sink receives the mail. Clients request
codes round-robin on both nodes at a steady pace, read each code from the sink as it arrives
and sign in with it, while a schedule kills workers (SIGKILL of the whole process tree,
then a new one), restarts Redis empty and stops the mail server for a few seconds.

What must hold:

- every request accepted (202) while the services were up is emailed exactly once (counted
  per recipient in the sink), and its code signs in;
- requests accepted before the empty Redis restart may lose their code: Redis held the
  code and the queued task. They are counted apart (`lost_to_empty_restart`), never
  emailed twice, and a code of theirs that arrives is refused, not accepted;
- the only 5xx is 503 with Retry-After (while Redis is down), and no request waits past the
  client's 10 s timeout;
- a worker that dies on a broker loss exits non-zero, and the supervisor (here the test)
  starts another: no live worker stops consuming.

The counts (accepted, delivered, duplicates, missing, 503s, drain time, redelivery delay
after each SIGKILL) are written to a JSON file in the test's temporary directory, recorded
with `record_property`, and printed in the terminal summary ("chaos report").
Waits are deadline-bounded polls; durations are asserted only against the system's own
documented bounds (client timeout, visibility timeout + sweep).
"""

from __future__ import annotations

import base64
import http.client
import itertools
import json
import queue
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from live_stack import WebNode, WorkerNode, node_environment, stop_all, wait_until

from app import create_app
from app.devtools.inbox import Inbox, plain_text, start_inbox
from app.devtools.redis_server import free_port, start_server
from support import StallingInbox, make_config, new_email

pytestmark = [pytest.mark.live, pytest.mark.chaos]

CLIENT_TIMEOUT = 10.0
VISIBILITY_TIMEOUT = 10  # the Redis broker's, set small so redelivery fits in a test
RESTORE_SWEEP = 1  # celery_app.restore_sweep_seconds(10)
CODE = re.compile(r"\b(\d{6})\b")


class SinkInbox(Inbox):
    """The SMTP sink; hands each message to the verifying clients as it arrives."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: queue.Queue[tuple[str, str, float]] = queue.Queue()
        self.first_arrivals: dict[str, float] = {}
        self.last_arrival = 0.0

    def on_message(self, message: EmailMessage) -> None:
        match = CODE.search(plain_text(message))
        now = time.monotonic()
        self.last_arrival = now
        self.first_arrivals.setdefault(str(message["To"]), now)
        self.arrivals.put((str(message["To"]), match.group(1) if match else "", now))

    def count_to(self, address: str) -> int:
        return len(self.to(address))


class MailServer:
    """The sink on a fixed port, which the test stops and starts again."""

    def __init__(self) -> None:
        self.inbox = SinkInbox()
        self.port = free_port()
        self.controller: Any = start_inbox(self.inbox, self.port)

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def start(self) -> None:
        if self.controller is None:
            self.controller = start_inbox(self.inbox, self.port)


class RedisServer:
    """State store and broker on a fixed port; restarted empty (it persists nothing)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir, self.port = workdir, free_port()
        self.process: subprocess.Popen[bytes] | None = start_server(self.port, workdir)
        self.url = f"redis://127.0.0.1:{self.port}"

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def start(self) -> None:
        self.process = start_server(self.port, self.workdir)


@dataclass
class SignIn:
    """One client's sign-in, as the client saw it."""

    email: str
    started: float = 0.0
    answered: float = 0.0
    status: int | None = None
    retry_after: str | None = None
    failure: str | None = None  # timeout, connection error or an unexpected answer
    verified: int | None = None  # the status of verify-otp with the emailed code
    verify_failures: list[str] = field(default_factory=list)


@dataclass
class Fault:
    at: float  # seconds after the start of the load
    what: str
    seconds: float = 0.0


class Supervisor:
    """Restarts a worker that exits by itself, as Docker's restart policy or systemd would."""

    def __init__(self, env: dict[str, str], logs: Path, count: int) -> None:
        self.env, self.logs = env, logs
        self.generation = itertools.count(1)
        self.lock = threading.Lock()
        self.workers = [self._start(f"worker-{n + 1}") for n in range(count)]
        self.exits: list[dict[str, Any]] = []  # exits the supervisor saw and restarted
        self.retired: list[WorkerNode] = []  # stopped on purpose, maybe still finishing
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def _start(self, name: str) -> WorkerNode:
        return WorkerNode(
            self.env, self.logs, f"{name}-{next(self.generation)}", pool="prefork",
            concurrency=2, as_deployed=True,
        )

    def wait_ready(self) -> None:
        for worker in self.workers:
            worker.wait_ready(60)
        self.thread.start()

    def _watch(self) -> None:
        while not self.stopped.wait(0.25):
            with self.lock:
                for n, worker in enumerate(self.workers):
                    code = worker.process.poll()
                    if code is not None:
                        self.exits.append({"worker": worker.name, "exit_code": code})
                        self.workers[n] = self._start(f"worker-{n + 1}")

    def kill_and_replace(self, n: int) -> tuple[WorkerNode, WorkerNode]:
        """SIGKILL worker `n` (with its pool) and start its replacement at once."""
        with self.lock:
            old = self.workers[n]
            old.kill()
            self.workers[n] = self._start(f"worker-{n + 1}")
            return old, self.workers[n]

    def terminate_and_replace(self, n: int) -> tuple[WorkerNode, WorkerNode]:
        """SIGTERM worker `n` (warm shutdown) and start its replacement at once."""
        with self.lock:
            old = self.workers[n]
            old.signal(signal.SIGTERM)
            self.workers[n] = self._start(f"worker-{n + 1}")
            self.retired.append(old)
            return old, self.workers[n]

    def all_processes(self) -> list[subprocess.Popen[bytes]]:
        with self.lock:
            return [worker.process for worker in [*self.workers, *self.retired]]

    def stop(self) -> None:
        self.stopped.set()
        if self.thread.is_alive():
            self.thread.join(5)
        stop_all(self.all_processes())


def post(node: WebNode, path: str, body: dict[str, str]) -> tuple[int, str | None, dict[str, Any]]:
    """One request on a fresh connection, bounded by the client's timeout."""
    connection = http.client.HTTPConnection("127.0.0.1", node.port, timeout=CLIENT_TIMEOUT)
    try:
        connection.request(
            "POST", path, body=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Connection": "close"},
        )
        response = connection.getresponse()
        raw = response.read()
        try:
            payload = json.loads(raw) if raw else {}
        except ValueError:
            payload = {"raw": raw[:200].decode(errors="replace")}
        return response.status, response.getheader("Retry-After"), payload
    finally:
        connection.close()


class Load:
    """Paced sign-ins from several client threads, round-robin over the live nodes."""

    def __init__(self, nodes: list[WebNode], mail: MailServer, count: int, seconds: float,
                 clients: int = 4) -> None:
        self.nodes, self.mail = nodes, mail
        self.sign_ins = [SignIn(new_email("chaos")) for _ in range(count)]
        self.by_email = {s.email: s for s in self.sign_ins}
        self.pace = seconds / count
        self.next_index = itertools.count()
        self.turn = itertools.count()
        self.lock = threading.Lock()
        self.started = 0.0
        self.ended = 0.0
        self.verified: set[str] = set()
        self.done = threading.Event()
        self.threads = [threading.Thread(target=self._request, daemon=True)
                        for _ in range(clients)]
        self.threads += [threading.Thread(target=self._verify, daemon=True)
                         for _ in range(clients)]

    def node(self) -> WebNode:
        with self.lock:
            return self.nodes[next(self.turn) % len(self.nodes)]

    def replace_node(self, old: WebNode, new: WebNode) -> None:
        """The balancer stops sending to `old` and starts sending to `new`."""
        with self.lock:
            self.nodes = [new if node is old else node for node in self.nodes]

    def start(self) -> None:
        self.started = time.monotonic()
        for thread in self.threads:
            thread.start()

    def clock(self) -> float:
        return time.monotonic() - self.started

    def _request(self) -> None:
        while True:
            with self.lock:
                index = next(self.next_index)
            if index >= len(self.sign_ins):
                return
            due = self.started + index * self.pace
            time.sleep(max(0.0, due - time.monotonic()))
            sign_in = self.sign_ins[index]
            sign_in.started = time.monotonic()
            try:
                status, retry_after, body = post(
                    self.node(), "/auth/request-otp", {"email": sign_in.email}
                )
            except (OSError, http.client.HTTPException) as error:
                sign_in.failure = f"request-otp: {type(error).__name__}"
            else:
                sign_in.status, sign_in.retry_after = status, retry_after
                if status not in (202, 503):
                    sign_in.failure = f"request-otp: {status} {body}"
            sign_in.answered = time.monotonic()
            with self.lock:
                self.ended = max(self.ended, sign_in.answered)

    def _verify(self) -> None:
        while not self.done.is_set():
            try:
                recipient, code, _ = self.mail.inbox.arrivals.get(timeout=0.2)
            except queue.Empty:
                continue
            sign_in = self.by_email.get(recipient)
            with self.lock:
                if sign_in is None or recipient in self.verified:
                    continue  # a duplicate: counted from the sink, signed in once
                self.verified.add(recipient)
            sign_in.verified = self._verify_once(sign_in, code)

    def _verify_once(self, sign_in: SignIn, code: str) -> int | None:
        deadline = time.monotonic() + 30
        while True:
            try:
                status, retry_after, body = post(
                    self.node(), "/auth/verify-otp", {"email": sign_in.email, "otp": code}
                )
            except (OSError, http.client.HTTPException) as error:
                sign_in.verify_failures.append(type(error).__name__)
                return None
            if status == 503 and retry_after and time.monotonic() < deadline:
                time.sleep(min(float(retry_after), 1.0))  # as told, within our own patience
                continue
            if status not in (200, 401):
                sign_in.verify_failures.append(f"{status} {body}")
            return status

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in self.threads[: len(self.threads) // 2]:
            thread.join(max(0.1, deadline - time.monotonic()))
            assert not thread.is_alive(), "a client still waits past its timeout"

    def stop(self) -> None:
        self.done.set()
        for thread in self.threads:
            thread.join(CLIENT_TIMEOUT + 5)


@dataclass
class Stack:
    redis: RedisServer
    mail: MailServer
    nodes: list[WebNode]
    workers: Supervisor
    env: dict[str, str]
    logs: Path

    def broker(self) -> redis.Redis:
        return redis.Redis.from_url(f"{self.redis.url}/1", socket_timeout=2)


@pytest.fixture
def stack(app: Flask, database_url: str, tmp_path: Path) -> Iterator[Stack]:
    """Two gunicorn nodes and two prefork workers on one Redis of the test's own."""
    mail = MailServer()
    store = RedisServer(tmp_path / "redis")
    env = node_environment(
        redis_url=f"{store.url}/0", broker_url=f"{store.url}/1", database_url=database_url,
        mail_port=mail.port,
        CELERY_VISIBILITY_TIMEOUT=str(VISIBILITY_TIMEOUT),
        OTP_RATE_LIMIT_REQUEST="100000 per hour", OTP_RATE_LIMIT_VERIFY="100000 per hour",
        WORKER_HEARTBEAT_FILE="",
    )
    nodes: list[WebNode] = []
    workers = None
    try:
        nodes = [WebNode(env, tmp_path, "node-a"), WebNode(env, tmp_path, "node-b")]
        workers = Supervisor(env, tmp_path, 2)
        for node in nodes:
            node.wait_ready(60)
        workers.wait_ready()
        yield Stack(store, mail, nodes, workers, env, tmp_path)
    finally:
        if workers is not None:
            workers.stop()
        stop_all([node.process for node in nodes])
        mail.stop()
        store.kill()


def held_emails(broker: redis.Redis) -> dict[str, str]:
    """Task id -> recipient of every message a worker holds unacknowledged."""
    held = {}
    for raw in broker.hvals("unacked"):
        message = json.loads(raw)[0]
        _args, kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        held[message["headers"]["id"]] = kwargs.get("email", "")
    return held


def report(
    name: str, counts: dict[str, Any], tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    """The counts as a JSON file, a recorded property and a terminal-summary section."""
    (tmp_path / f"{name}.json").write_text(json.dumps(counts, indent=2))
    record_property(name, json.dumps(counts))
    print(f"{name}: {json.dumps(counts)}")


def tally(load: Load, mail: MailServer, lost_before: float | None = None) -> dict[str, Any]:
    """Counts per sign-in; `lost_before`: requests started before this moment (the empty
    Redis restart's end) may have lost their code, and are counted apart."""
    accepted = [s for s in load.sign_ins if s.status == 202]
    exempt = [s for s in accepted if lost_before is not None and s.started < lost_before]
    strict = [s for s in accepted if s not in exempt]
    emails = {s.email: mail.inbox.count_to(s.email) for s in accepted}
    unavailable = [s for s in load.sign_ins if s.status == 503]
    lost = [s for s in exempt if emails[s.email] == 0 or s.verified != 200]
    return {
        "sign_ins": len(load.sign_ins),
        "accepted": len(accepted),
        "delivered": sum(1 for s in accepted if emails[s.email] >= 1),
        "duplicates": sum(n - 1 for n in emails.values() if n > 1),
        "missing": sum(1 for s in strict if emails[s.email] == 0),
        "signed_in": sum(1 for s in accepted if s.verified == 200),
        "code_refused": sum(1 for s in strict if emails[s.email] and s.verified != 200),
        "accepted_before_empty_restart": len(exempt),
        "lost_to_empty_restart": len(lost),
        "unavailable_503": len(unavailable),
        "unavailable_503_without_retry_after": sum(
            1 for s in unavailable if not (s.retry_after and int(s.retry_after) > 0)
        ),
        "failures": [f"{s.email}: {s.failure}" for s in load.sign_ins if s.failure],
        "verify_failures": [f"{s.email}: {f}" for s in accepted for f in s.verify_failures],
        "slowest_request_s": round(max(s.answered - s.started for s in load.sign_ins), 3),
    }


def wait_for_mail(load: Load, mail: MailServer, expected: list[SignIn], timeout: float) -> None:
    """Until every expected email arrived and was used, or `timeout` (then the tally tells)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(mail.inbox.count_to(s.email) for s in expected) and all(
            s.verified is not None or s.verify_failures for s in expected
        ):
            return
        time.sleep(0.2)


def drain(stack: Stack, timeout: float = 30) -> None:
    """Until the broker holds no task, queued or unacknowledged."""
    broker = stack.broker()
    with broker:
        wait_until(
            lambda: broker.llen("celery") == 0 and broker.hlen("unacked") == 0,
            timeout, "the broker to drain",
        )


def test_sign_ins_survive_killed_workers_an_empty_redis_restart_and_mail_outages(
    stack: Stack, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    load = Load(stack.nodes, stack.mail, count=300, seconds=50)
    faults: list[Fault] = []
    redeliveries: list[dict[str, Any]] = []
    redis_back_at: float | None = None
    broker = stack.broker()

    def at(offset: float) -> None:
        time.sleep(max(0.0, load.started + offset - time.monotonic()))

    def mail_outage(offset: float, seconds: float = 3.0) -> threading.Thread:
        """Stop the mail server at `offset` for `seconds`; the schedule goes on meanwhile."""
        at(offset)
        faults.append(Fault(load.clock(), "mail server stopped", seconds))
        stack.mail.stop()
        restart = threading.Timer(seconds, stack.mail.start)
        restart.start()
        return restart

    def kill_worker(offset: float, n: int) -> None:
        """SIGKILL worker `n` at `offset`, preferably while it holds a task (up to 3 s later),
        so that the redelivery delay is measured."""
        at(offset)
        worker, deadline = stack.workers.workers[n], time.monotonic() + 3
        held: dict[str, str] = {}
        while time.monotonic() < deadline:
            try:
                held = held_emails(broker)
            except redis.RedisError:
                held = {}
            if set(held) & set(worker.received_task_ids()):
                break
            time.sleep(0.05)
        old, _new = stack.workers.kill_and_replace(n)
        killed_at = time.monotonic()
        faults.append(Fault(load.clock(), f"SIGKILL {old.name}"))
        # The killed worker's messages: held at the kill, and received in its own log.
        received = set(old.received_task_ids())
        theirs = [email for task, email in held.items() if task in received]
        redeliveries.append({"worker": old.name, "held": theirs, "killed_at": killed_at})

    load.start()
    outages = [mail_outage(3.0)]
    kill_worker(4.5, 0)  # during the outage: its retries wait in the worker, unacknowledged
    outages.append(mail_outage(15.0))
    at(22.0)
    faults.append(Fault(load.clock(), "Redis killed; restarted empty", 1.0))
    stack.redis.kill()
    time.sleep(1.0)
    stack.redis.start()
    redis_back_at = time.monotonic()
    kill_worker(33.0, 1)
    outages.append(mail_outage(40.0))
    for outage in outages:
        outage.join(10)

    load.join(timeout=60 + CLIENT_TIMEOUT)
    load_ended = load.ended
    strict = [s for s in load.sign_ins if s.status == 202 and s.started >= redis_back_at]
    early = [s for s in load.sign_ins if s.status == 202 and s.started < redis_back_at]
    wait_for_mail(load, stack.mail, strict, timeout=60)
    # The early ones' emails may be gone with the Redis that held their tasks: a short grace.
    wait_for_mail(load, stack.mail, early, timeout=5)
    drain(stack)
    time.sleep(1.0)  # a duplicate would come now, if the queue still held one
    load.stop()

    counts = tally(load, stack.mail, lost_before=redis_back_at)
    counts["drain_time_s"] = round(max(0.0, stack.mail.inbox.last_arrival - load_ended), 3)
    for entry in redeliveries:
        arrivals = [
            stack.mail.inbox.first_arrivals[email] for email in entry["held"]
            # sent before the kill: finished between the look at the broker and the signal
            if stack.mail.inbox.first_arrivals.get(email, 0.0) > entry["killed_at"]
        ]
        entry["delay_s"] = round(max(arrivals) - entry["killed_at"], 3) if arrivals else None
        entry["held"] = len(entry["held"])
        del entry["killed_at"]
    counts["redelivery_after_sigkill"] = redeliveries
    counts["worker_exits_restarted_by_supervisor"] = stack.workers.exits
    counts["faults"] = [f"{f.at:.1f}s {f.what}" + (f" ({f.seconds:.0f}s)" if f.seconds else "")
                        for f in faults]
    report("chaos report", counts, tmp_path, record_property)

    assert counts["failures"] == [] and counts["verify_failures"] == [], counts
    assert counts["unavailable_503_without_retry_after"] == 0, counts
    assert counts["missing"] == 0 and counts["duplicates"] == 0, counts
    assert counts["code_refused"] == 0, counts
    assert counts["accepted"] - counts["lost_to_empty_restart"] == counts["signed_in"], counts
    # Only while Redis was down may a request be refused.
    assert counts["unavailable_503"] <= len(load.sign_ins) // 10, counts
    for entry in redeliveries:
        if entry["delay_s"] is not None:
            assert entry["delay_s"] <= VISIBILITY_TIMEOUT + RESTORE_SWEEP + 5, entry



def test_a_graceful_deploy_mid_load_loses_no_sign_in_and_no_email(
    stack: Stack, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    """SIGTERM to node A (after the balancer stopped sending to it) and to a worker, each
    replaced by a new one, while sign-ins go on: nothing is refused, lost or sent twice."""
    load = Load(stack.nodes, stack.mail, count=120, seconds=20)
    old_node = stack.nodes[0]
    load.start()
    new_node = WebNode(stack.env, tmp_path, "node-c").wait_ready(60)
    time.sleep(max(0.0, load.started + 8 - time.monotonic()))
    load.replace_node(old_node, new_node)
    deployed_at = load.clock()
    old_node.signal(signal.SIGTERM)
    old_worker, _ = stack.workers.terminate_and_replace(0)
    try:
        load.join(timeout=40 + CLIENT_TIMEOUT)
        accepted = [s for s in load.sign_ins if s.status == 202]
        wait_for_mail(load, stack.mail, accepted, timeout=60)
        drain(stack)
        time.sleep(1.0)  # a duplicate would come now, if the queue still held one
        load.stop()
        counts = tally(load, stack.mail)
        counts["drain_time_s"] = round(max(0.0, stack.mail.inbox.last_arrival - load.ended), 3)
        counts["deployed_at_s"] = round(deployed_at, 1)
        counts["old_node_exit_code"] = old_node.process.wait(timeout=30)
        counts["old_worker_exit_code"] = old_worker.process.wait(timeout=60)
        report("graceful deploy report", counts, tmp_path, record_property)
        assert counts["failures"] == [] and counts["verify_failures"] == [], counts
        assert counts["accepted"] == counts["sign_ins"] == counts["signed_in"], counts
        assert counts["missing"] == counts["duplicates"] == 0, counts
        assert counts["old_node_exit_code"] == 0 and counts["old_worker_exit_code"] == 0, counts
    finally:
        new_node.stop()


def test_a_running_worker_sends_a_killed_workers_email_within_visibility_plus_sweep(
    app: Flask, database_url: str, tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    """Two deployed-style workers; the one sending an email is SIGKILLed and not replaced:
    the other one's periodic sweep (unacked_restore_interval) hands the email out again."""
    sink = StallingInbox()
    port = free_port()
    controller = start_inbox(sink, port)
    store = RedisServer(tmp_path / "redis")
    env = node_environment(
        redis_url=f"{store.url}/0", broker_url=f"{store.url}/1", database_url=database_url,
        mail_port=port, CELERY_VISIBILITY_TIMEOUT=str(VISIBILITY_TIMEOUT),
    )
    workers = [
        WorkerNode(env, tmp_path, f"sweeper-{n}", pool="prefork", as_deployed=True)
        for n in (1, 2)
    ]
    client = create_app(make_config(
        store.url, database_url, port, OTP_CELERY_VISIBILITY_TIMEOUT=VISIBILITY_TIMEOUT
    )).test_client()
    try:
        for worker in workers:
            worker.wait_ready(60)
        email = new_email("sweep")
        assert client.post("/auth/request-otp", json={"email": email}).status_code == 202
        assert sink.stalled.wait(30), "no worker reached DATA"
        broker = redis.Redis.from_url(f"{store.url}/1")
        (task_id,) = held_emails(broker)
        (sender,) = [w for w in workers if task_id in w.received_task_ids()]
        (survivor,) = [w for w in workers if w is not sender]
        sender.kill()
        killed_at = time.monotonic()
        sink.wait_for(email, timeout=VISIBILITY_TIMEOUT + RESTORE_SWEEP + 30)
        delay = time.monotonic() - killed_at
        record_property("redelivery report", json.dumps({"delay_s": round(delay, 3)}))
        print(f"redelivered {delay:.1f} s after the SIGKILL")
        assert delay <= VISIBILITY_TIMEOUT + RESTORE_SWEEP + 5, delay
        assert task_id in survivor.received_task_ids()
        assert len(sink.to(email)) == 1
    finally:
        stop_all([worker.process for worker in workers])
        controller.stop()
        store.kill()


def test_a_worker_recovers_or_exits_after_each_broker_restart(
    app: Flask, database_url: str, tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    """Redis (the broker) restarted empty five times under a deployed-style worker, each
    time right after a task, so the worker may still hold it: after each, a new task is
    consumed; a worker that cannot reconnect exits non-zero (its supervisor starts another),
    and never lives on without consuming. Its heartbeat file is fresh again each time."""
    mail = MailServer()
    store = RedisServer(tmp_path / "redis")
    heartbeat = tmp_path / "worker-heartbeat"
    env = node_environment(
        redis_url=f"{store.url}/0", broker_url=f"{store.url}/1", database_url=database_url,
        mail_port=mail.port, WORKER_HEARTBEAT_FILE=str(heartbeat),
    )
    workers = Supervisor(env, tmp_path, 1)
    client = create_app(make_config(store.url, database_url, mail.port)).test_client()
    recoveries = []
    try:
        workers.wait_ready()
        for _ in range(5):
            email = new_email("broker")
            assert client.post("/auth/request-otp", json={"email": email}).status_code == 202
            mail.inbox.wait_for(email, timeout=60)
            store.kill()  # at once: the worker may not have acknowledged the task yet
            time.sleep(0.5)
            store.start()
            restarted_at = time.monotonic()
            email = new_email("broker")
            wait_until(
                lambda: client.post(
                    "/auth/request-otp", json={"email": email}  # noqa: B023
                ).status_code == 202,
                15, "the app to queue again",
            )
            mail.inbox.wait_for(email, timeout=60)
            recoveries.append(round(time.monotonic() - restarted_at, 3))
            wait_until(lambda: heartbeat.stat().st_mtime > time.time() - 6, 15,
                       "a fresh heartbeat")
        counts = {"consumed_again_after_s": recoveries, "exits": workers.exits}
        record_property("broker restart report", json.dumps(counts))
        print("broker restarts:", counts)
        assert all(exit["exit_code"] != 0 for exit in workers.exits), counts
    finally:
        workers.stop()
        mail.stop()
        store.kill()
