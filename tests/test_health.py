"""/healthz and /readyz, against the real services and against dead ports."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from app.devtools.inbox import Inbox
from app.devtools.redis_server import free_port
from support import error_code, make_config


def test_healthz_answers_without_touching_any_service(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}


def test_readyz_reports_every_service_ok(client: FlaskClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {
        "status": "ready",
        "checks": {"redis": "ok", "database": "ok", "broker": "ok"},
    }


@pytest.fixture
def app_with(
    redis_url: str, database_url: str, inbox: Inbox, app: Flask
) -> Iterator[Callable[..., Flask]]:
    """Builds an app whose settings point some services at dead ports."""
    made: list[Flask] = []

    def build(**overrides: Any) -> Flask:
        made.append(create_app(make_config(redis_url, database_url, inbox.port, **overrides)))
        return made[-1]

    yield build
    for built in made:
        built.extensions["email_signin"].redis.close()


def dead_redis() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"


@pytest.mark.parametrize(
    ("overrides", "failed"),
    [
        (lambda: {"OTP_REDIS_URL": dead_redis()}, ["redis"]),
        (lambda: {"OTP_CELERY_BROKER_URL": dead_redis()}, ["broker"]),
        (lambda: {"OTP_CELERY_BROKER_URL": f"amqp://guest:guest@127.0.0.1:{free_port()}//"},
         ["broker"]),
        (lambda: {"SQLALCHEMY_DATABASE_URI":
                  f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/none"}, ["database"]),
        (lambda: {"OTP_REDIS_URL": dead_redis(), "OTP_CELERY_BROKER_URL": dead_redis()},
         ["broker", "redis"]),
    ],
    ids=["redis", "redis-broker", "amqp-broker", "database", "redis-and-broker"],
)
def test_readyz_names_each_unreachable_service(
    app_with: Callable[..., Flask], overrides: Callable[[], dict[str, str]], failed: list[str]
) -> None:
    response = app_with(**overrides()).test_client().get("/readyz")
    assert response.status_code == 503 and error_code(response) == "not_ready"
    body = response.get_json()["error"]
    assert body["details"]["failed"] == failed
    for name in failed:
        assert name in body["message"]
        assert body["details"]["checks"][name].startswith("unreachable (")
    for name in {"redis", "database", "broker"} - set(failed):
        assert body["details"]["checks"][name] == "ok"
    assert response.headers["Retry-After"] == "5"
    # A liveness probe must not restart a process whose dependencies are down.
    assert app_with(**overrides()).test_client().get("/healthz").status_code == 200
