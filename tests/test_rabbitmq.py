"""The email flow with RabbitMQ as the broker (CELERY_BROKER_URL=amqp://...).

Runs against the RabbitMQ at TEST_RABBITMQ_URL (default: guest on 127.0.0.1:5672)
when it answers; otherwise the report header and the closing summary say it did not
run. The test uses a queue of its own and deletes it afterwards, so it never takes or
drops anyone else's messages on that server.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from flask import Flask
from kombu import Connection
from live_stack import app_with_worker, auth_actions
from local_services import RABBITMQ_URL, rabbitmq_problem

from app.devtools.inbox import Inbox
from support import error_code, make_config, new_email

# Starts processes of its own (servers, workers or a browser): `pytest -m "not live"` skips it.
pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def rabbit_app(
    app: Flask, redis_url: str, database_url: str, inbox: Inbox,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Flask]:
    """The app with RabbitMQ as its broker, on a private queue, with its own worker."""
    problem = rabbitmq_problem()
    if problem:
        pytest.skip(f"NOT RUN: RabbitMQ at {RABBITMQ_URL.split('@')[-1]} unusable ({problem})")
    queue = f"passwordless-test-{uuid.uuid4().hex[:12]}"
    config = make_config(
        redis_url, database_url, inbox.port,  # type: ignore[attr-defined]
        OTP_REDIS_URL=f"{redis_url}/2", OTP_CELERY_BROKER_URL=RABBITMQ_URL,
    )
    try:
        logs = tmp_path_factory.mktemp("rabbit-worker")
        # prefork, the deployment's pool: a solo worker blocks up to the process-wide
        # socket timeout (MAIL_TIMEOUT_SECONDS) in an AMQP read before it can stop.
        with app_with_worker(config, logs, queue=queue, pool="prefork") as rabbit_app:
            yield rabbit_app
    finally:
        with Connection(RABBITMQ_URL, connect_timeout=2) as connection:
            connection.default_channel.queue_delete(queue)


def test_a_code_travels_through_rabbitmq_and_signs_in(rabbit_app: Flask, inbox: Inbox) -> None:
    celery = rabbit_app.extensions["celery"]
    assert celery.conf.broker_url.startswith("amqp://")
    with celery.connection_for_write() as connection:
        assert connection.transport.driver_type == "amqp"
    auth = auth_actions(rabbit_app, inbox, "127.0.10.1")
    email = new_email("rabbit")
    auth.sign_in(email)
    assert auth.client.get("/auth/me").get_json()["email"] == email


def test_the_newest_code_wins_through_rabbitmq(rabbit_app: Flask, inbox: Inbox) -> None:
    auth = auth_actions(rabbit_app, inbox, "127.0.10.2")
    email = new_email("rabbit")
    rabbit_app.config["OTP_RESEND_COOLDOWN_SECONDS"] = 0
    try:
        assert auth.request_code(email).status_code == 202
        first = auth.read_code_from_inbox(email)
        assert auth.request_code(email).status_code == 202
        second = auth.read_code_from_inbox(email, count=2)
    finally:
        rabbit_app.config["OTP_RESEND_COOLDOWN_SECONDS"] = 60
    stale = auth.verify(email, first)
    if first != second:
        assert stale.status_code == 401 and error_code(stale) == "otp_superseded"
    assert auth.verify(email, second).status_code == 200
