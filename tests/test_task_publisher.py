"""The email task's publisher: on a Redis broker, exactly the message Celery would send."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import redis
from celery import Celery
from flask import Flask

from flask_email_signin.redis_client import LeanRedis
from flask_email_signin.task_publisher import (
    CeleryTaskPublisher,
    RedisTaskPublisher,
    TaskPublisher,
    redis_publisher_unsupported,
)
from flask_email_signin.tasks import (
    MAX_RETRY_DELAY_SECONDS,
    REDACTED_KWARGS,
    SEND_LOGIN_CODE,
    longest_retry_delay,
)
from support import AuthActions

KWARGS = {"email": "a@example.org", "code": "123456", "expires_at": 1, "link_secret": "s"}
PER_MESSAGE = {"id", "root_id", "expires"}  # ids and times differ from message to message


def pushed(client: redis.Redis) -> dict[str, Any]:
    raw = client.rpop("celery")
    assert isinstance(raw, bytes), "nothing was queued"
    return dict(json.loads(raw))


def test_the_fast_path_sends_what_send_task_sends(redis_url: str) -> None:
    broker_url = f"{redis_url}/7"
    celery = Celery("publisher-test", broker=broker_url)
    celery.conf.update(task_serializer="json", accept_content=["json"])
    client = LeanRedis(connection_pool=redis.ConnectionPool.from_url(broker_url))
    client.delete("celery")
    fast = RedisTaskPublisher(celery, client)
    try:
        options = {"kwargs": KWARGS, "expires": 300, "kwargsrepr": REDACTED_KWARGS,
                   "headers": {"request_id": "r-1"}}
        CeleryTaskPublisher(celery).publish(SEND_LOGIN_CODE, **options)
        expected = pushed(client)
        fast.publish(SEND_LOGIN_CODE, **options)  # the first message builds the template
        fast.publish(SEND_LOGIN_CODE, **{**options, "kwargs": {**KWARGS, "code": "654321"},
                                         "headers": {"request_id": "r-2"}})
        actual, second = pushed(client), pushed(client)
    finally:
        client.delete("celery", "_kombu.binding.celery")
        client.close()

    assert base64.b64decode(actual["body"]) == base64.b64decode(expected["body"])
    assert json.loads(base64.b64decode(actual["body"]))[1] == KWARGS
    assert {k: v for k, v in actual.items() if k not in ("body", "headers", "properties")} == {
        k: v for k, v in expected.items() if k not in ("body", "headers", "properties")
    }
    same_headers = set(expected["headers"]) - PER_MESSAGE
    assert set(actual["headers"]) == set(expected["headers"])
    assert {k: actual["headers"][k] for k in same_headers} == {
        k: expected["headers"][k] for k in same_headers
    }
    assert actual["headers"]["kwargsrepr"] == REDACTED_KWARGS  # no secret in monitoring
    for key in ("delivery_mode", "delivery_info", "priority", "body_encoding"):
        assert actual["properties"][key] == expected["properties"][key], key
    assert actual["properties"]["correlation_id"] == actual["headers"]["id"]
    # The same expiry instant (to the second), in Celery's ISO 8601 form.
    assert abs(datetime.fromisoformat(actual["headers"]["expires"])
               - datetime.fromisoformat(expected["headers"]["expires"])) < timedelta(seconds=5)
    # A later message copies the template: only its own parts differ.
    assert json.loads(base64.b64decode(second["body"]))[1] == {**KWARGS, "code": "654321"}
    assert second["headers"]["request_id"] == "r-2" and actual["headers"]["request_id"] == "r-1"
    assert second["headers"]["id"] != actual["headers"]["id"]
    assert second["properties"]["correlation_id"] == second["headers"]["root_id"] \
        == second["headers"]["id"]
    assert {k: v for k, v in second["headers"].items() if k not in PER_MESSAGE | {"request_id"}} \
        == {k: v for k, v in actual["headers"].items() if k not in PER_MESSAGE | {"request_id"}}


def test_the_suite_app_publishes_on_the_fast_path_and_the_worker_sends_the_email(
    auth: AuthActions, email: str, app: Flask
) -> None:
    assert auth.request_code(email).status_code == 202
    assert auth.read_code_from_inbox(email)  # a real worker consumed the pushed message
    publisher: TaskPublisher = app.extensions["email_signin"].publisher
    assert isinstance(publisher._chosen, RedisTaskPublisher)


def test_other_brokers_and_custom_routes_keep_send_task() -> None:
    rabbit = Celery("rabbit", broker="amqp://guest:guest@127.0.0.1:5672//")
    assert redis_publisher_unsupported(rabbit) == "the broker is not a plain redis:// server"
    routed = Celery("routed", broker="redis://127.0.0.1:1/0")
    routed.conf.task_routes = {SEND_LOGIN_CODE: {"queue": "mail"}}
    assert redis_publisher_unsupported(routed) == "custom task routes or queues"
    plain = Celery("plain", broker="redis://127.0.0.1:1/0")
    plain.conf.task_serializer = "json"
    assert redis_publisher_unsupported(plain) is None


def test_retries_wait_at_most_half_the_visibility_timeout() -> None:
    """A retry held past the visibility timeout would be handed to a second worker as well."""
    def task(options: dict[str, Any]) -> Any:
        return SimpleNamespace(app=SimpleNamespace(
            conf=SimpleNamespace(broker_transport_options=options)
        ))

    assert longest_retry_delay(task({})) == MAX_RETRY_DELAY_SECONDS
    assert longest_retry_delay(task({"visibility_timeout": 300})) == MAX_RETRY_DELAY_SECONDS
    assert longest_retry_delay(task({"visibility_timeout": 10})) == 5
    assert longest_retry_delay(task({"visibility_timeout": 1})) == 1
