"""Two gunicorn nodes and two Celery workers sharing one Redis behave as one service.

Everything a sign-in depends on lives in Redis (codes, cooldowns, attempts, sessions,
rate-limit counters) or the database, so it does not matter which node a request
reaches; the broker hands each email to exactly one of the workers.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

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

from app.devtools.inbox import Inbox, plain_text
from support import new_email

# Starts processes of its own (servers, workers or a browser): `pytest -m "not live"` skips it.
pytestmark = pytest.mark.live

REQUEST_LIMIT_PER_MINUTE = 6


@dataclass
class TwoNodes:
    a: WebNode
    b: WebNode
    workers: list[WorkerNode]
    store_url: str
    broker_url: str


@pytest.fixture(scope="module")
def nodes(
    app: Flask, database_url: str, inbox: Inbox, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TwoNodes]:
    """Nodes A and B (gunicorn) and two workers, all on one private Redis."""
    logs = tmp_path_factory.mktemp("two-nodes")
    started: list[WebNode | WorkerNode] = []
    with private_redis(logs / "redis") as shared:
        env = node_environment(
            redis_url=f"{shared}/0", broker_url=f"{shared}/1", database_url=database_url,
            mail_port=inbox.port,  # type: ignore[attr-defined]
            OTP_RATE_LIMIT_REQUEST=f"{REQUEST_LIMIT_PER_MINUTE} per minute",
        )
        try:
            a, b = WebNode(env, logs, "node-a"), WebNode(env, logs, "node-b")
            workers = [WorkerNode(env, logs, "worker-1"), WorkerNode(env, logs, "worker-2")]
            started += [a, b, *workers]
            a.wait_ready()
            b.wait_ready()
            for worker in workers:
                worker.wait_ready()
            yield TwoNodes(a, b, workers, f"{shared}/0", f"{shared}/1")
        finally:
            stop_all([node.process for node in started])


def read_code(inbox: Inbox, email: str, count: int = 1) -> str:
    match = re.search(r"\b(\d{6})\b", plain_text(inbox.wait_for(email, count=count)[count - 1]))
    assert match, "no code in the email"
    return match.group(1)


def test_a_code_requested_on_node_a_verifies_on_node_b(nodes: TwoNodes, inbox: Inbox) -> None:
    email = new_email("nodes")
    status, _ = nodes.a.request("POST", "/auth/request-otp", {"email": email}, source="127.0.7.1")
    assert status == 202
    code = read_code(inbox, email)
    status, body = nodes.b.request(
        "POST", "/auth/verify-otp", {"email": email, "otp": code}, source="127.0.7.1"
    )
    assert status == 200 and body["user"]["email"] == email
    status, me = nodes.a.request("GET", "/auth/me", token=body["access_token"])
    assert status == 200 and me["email"] == email


def test_a_logout_on_node_b_is_refused_on_node_a_at_once(nodes: TwoNodes, inbox: Inbox) -> None:
    email = new_email("nodes")
    nodes.a.request("POST", "/auth/request-otp", {"email": email}, source="127.0.7.2")
    _, body = nodes.a.request(
        "POST", "/auth/verify-otp", {"email": email, "otp": read_code(inbox, email)},
        source="127.0.7.2",
    )
    token = body["access_token"]
    assert nodes.a.request("GET", "/auth/me", token=token)[0] == 200
    assert nodes.b.request("POST", "/auth/logout", token=token)[0] == 200
    status, refused = nodes.a.request("GET", "/auth/me", token=token)
    assert status == 401 and refused["error"]["code"] == "token_revoked"


def test_the_resend_cooldown_holds_across_nodes(nodes: TwoNodes) -> None:
    body = {"email": new_email("nodes")}
    assert nodes.a.request("POST", "/auth/request-otp", body, source="127.0.7.3")[0] == 202
    status, refused = nodes.b.request("POST", "/auth/request-otp", body, source="127.0.7.3")
    assert status == 429 and refused["error"]["code"] == "resend_cooldown"


def test_wrong_answers_count_on_both_nodes(nodes: TwoNodes, inbox: Inbox) -> None:
    email = new_email("nodes")
    nodes.a.request("POST", "/auth/request-otp", {"email": email}, source="127.0.7.4")
    code = read_code(inbox, email)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    lefts = []
    for node in (nodes.a, nodes.b, nodes.a, nodes.b):
        status, body = node.request(
            "POST", "/auth/verify-otp", {"email": email, "otp": wrong}, source="127.0.7.4"
        )
        assert status == 401
        lefts.append(body["error"]["details"]["attempts_left"])
    assert lefts == [4, 3, 2, 1]
    nodes.b.request("POST", "/auth/verify-otp", {"email": email, "otp": wrong}, source="127.0.7.4")
    status, body = nodes.a.request(
        "POST", "/auth/verify-otp", {"email": email, "otp": code}, source="127.0.7.4"
    )
    assert status == 401 and body["error"]["code"] == "otp_attempts_exceeded"


def test_the_per_address_rate_limit_is_shared_by_both_nodes(nodes: TwoNodes) -> None:
    for n in range(REQUEST_LIMIT_PER_MINUTE):
        node = (nodes.a, nodes.b)[n % 2]
        body = {"email": new_email("limit")}
        assert node.request("POST", "/auth/request-otp", body, source="127.0.7.5")[0] == 202
    for node in (nodes.a, nodes.b):
        status, refused = node.request(
            "POST", "/auth/request-otp", {"email": new_email("limit")}, source="127.0.7.5"
        )
        assert status == 429 and refused["error"]["code"] == "rate_limited"


def test_each_email_is_sent_exactly_once_by_two_workers(nodes: TwoNodes, inbox: Inbox) -> None:
    emails = [new_email("once") for _ in range(12)]
    for n, email in enumerate(emails):
        node = (nodes.a, nodes.b)[n % 2]
        status, _ = node.request(
            "POST", "/auth/request-otp", {"email": email}, source=f"127.0.8.{n + 1}"
        )
        assert status == 202
    for email in emails:
        inbox.wait_for(email)
    broker = redis.Redis.from_url(nodes.broker_url)
    with broker:
        # Every task is finished (acknowledged): no copy is left that could still be sent.
        wait_until(
            lambda: broker.llen("celery") == 0 and broker.hlen("unacked") == 0,
            15, "the queue to drain",
        )
    assert [len(inbox.to(email)) for email in emails] == [1] * len(emails)
    # And at the broker: no task was handed to both workers, or twice to one.
    taken = [task for worker in nodes.workers for task in worker.received_task_ids()]
    assert len(taken) >= len(emails) and len(set(taken)) == len(taken)



def test_an_oversized_bearer_token_gets_the_json_envelope_through_gunicorn(
    nodes: TwoNodes,
) -> None:
    """A 20 KB token passes gunicorn's header limit and is refused by the app, in JSON."""
    status, body = nodes.a.request("GET", "/auth/me", token="x" * 20_000)
    assert status == 401 and body["error"]["code"] == "token_invalid"
