"""Fixtures: a private Redis server, a capturing SMTP server, a real Celery worker.

Nothing here touches a service the suite did not start itself, except the
PostgreSQL server named by TEST_DATABASE_URL, where the suite creates and
drops a database of its own.
"""

from __future__ import annotations

import gc
import os
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import flask_migrate
import pytest
import sqlalchemy as sa
from celery.contrib.testing.worker import start_worker, test_worker_started
from flask import Flask
from flask.testing import FlaskClient
from live_stack import ProxyNode, WebNode, served_environment

from app import create_app
from app.devtools.inbox import Inbox, start_inbox
from app.devtools.redis_server import free_port, start_server
from support import AuthActions, make_config, new_email


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private Redis server for this test session only."""
    port = free_port()
    process = start_server(port, tmp_path_factory.mktemp("redis"))
    yield f"redis://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="session")
def inbox() -> Iterator[Inbox]:
    """A real SMTP server (aiosmtpd) that captures every message sent to it."""
    box = Inbox()
    port = free_port()
    controller = start_inbox(box, port)
    box.port = port  # type: ignore[attr-defined]
    yield box
    controller.stop()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """SQLite in a temp dir, or a private database on TEST_DATABASE_URL's server."""
    server_url = os.environ.get("TEST_DATABASE_URL")
    if not server_url:
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
        return
    name = f"passwordless_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield sa.make_url(server_url).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def suite_config(redis_url: str, database_url: str, inbox: Inbox) -> type:
    return make_config(redis_url, database_url, inbox.port)  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def app(suite_config: type) -> Iterator[Flask]:
    """The app under test, its schema created by the real migrations."""
    app = create_app(suite_config)
    with app.app_context():
        flask_migrate.upgrade()
    yield app


@pytest.fixture(scope="session")
def celery_worker(app: Flask) -> Iterator[object]:
    """A real Celery worker (solo pool, in a thread) consuming the real broker."""
    celery = app.extensions["celery"]

    # The worker runs each task in its thread's *current* Celery app, which falls back to
    # the process-wide default that every later create_app() replaces. Pin the thread to
    # the suite's app, so tasks see the suite app's config (a deployment has one app).
    def pin_worker_thread(sender: object, **_: object) -> None:
        celery.set_current()

    test_worker_started.connect(pin_worker_thread, sender=celery, weak=False)
    worker_thread = start_worker(celery, pool="solo", perform_ping_check=False, shutdown_timeout=10)
    yield worker_thread.__enter__()
    # The worker thread keeps its SMTP connection open (app.email) and drops it when the
    # thread ends, here; a worker process would close it on exit. Expected, not a leak.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        worker_thread.__exit__(None, None, None)
        gc.collect()
    test_worker_started.disconnect(pin_worker_thread, sender=celery)


@pytest.fixture
def email() -> str:
    """A fresh address, so tests never share sign-in state."""
    return new_email()


@pytest.fixture
def auth(client: FlaskClient, inbox: Inbox, app: Flask, celery_worker: object) -> AuthActions:
    """Sign-in helper with a running worker and the capturing inbox."""
    return AuthActions(client, inbox, app)


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Say up front which optional local services (RabbitMQ, docker compose) are checked."""
    from local_services import status_lines

    return status_lines()


# What fault and load tests measured (latencies, counts), printed after the run.
MEASUREMENTS: list[str] = []


@pytest.fixture
def report_measurement(request: pytest.FixtureRequest) -> Any:
    """`report_measurement("slowest request", "2.3 s")`: shown in the run's summary."""

    def report(what: str, value: object) -> None:
        MEASUREMENTS.append(f"{request.node.name}: {what}: {value}")

    return report


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Figures the tests measured (`record_property("measured", ...)` or
    `report_measurement`), then any optional check that did not run on this machine."""
    from local_services import status_lines

    # What the fault, load and resilience tests measured, whatever -s says:
    # `record_property("measured" or "<name> report", ...)` and `report_measurement`.
    measured = [
        f"{report.nodeid.split('::')[-1]}: {value}" if name == "measured"
        else f"{report.nodeid.split('::')[-1]} {name}: {value}"
        for outcome in ("passed", "failed")
        for report in terminalreporter.stats.get(outcome, [])
        if getattr(report, "when", None) == "call"
        for name, value in getattr(report, "user_properties", [])
        if name == "measured" or name.endswith(" report")
    ] + MEASUREMENTS
    if measured:
        terminalreporter.section("measured")
        for line in measured:
            terminalreporter.write_line(line)
    missing = [line for line in status_lines() if "NOT RUN" in line]
    if missing:
        terminalreporter.section("checks not run on this machine", yellow=True)
        for line in missing:
            terminalreporter.write_line(line, yellow=True)


@pytest.fixture(scope="session")
def served(
    app: Flask, database_url: str, redis_url: str, inbox: Inbox,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[WebNode]:
    """The app under gunicorn with the deployment's gunicorn.conf.py, on the suite's services
    (the suite's worker sends its emails: request the `celery_worker` fixture too)."""
    env = served_environment(redis_url, database_url, inbox)
    node = WebNode(env, tmp_path_factory.mktemp("served"), "served")
    try:
        yield node.wait_ready()
    finally:
        node.stop()


@pytest.fixture(scope="session")
def proxied(
    app: Flask, database_url: str, redis_url: str, inbox: Inbox,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ProxyNode]:
    """The documented deployment: nginx with deploy/nginx.conf in front of gunicorn with
    gunicorn.conf.py, 2 processes of 4 threads (request `celery_worker` for emails)."""
    env = served_environment(redis_url, database_url, inbox, TRUSTED_PROXY_COUNT="1")
    logs = tmp_path_factory.mktemp("proxied")
    node = WebNode(env, logs, "proxied-gunicorn", "--workers", "2")
    proxy: ProxyNode | None = None
    try:
        node.wait_ready()
        proxy = ProxyNode(node.port, logs)
        yield proxy.wait_ready()
    finally:
        if proxy is not None:
            proxy.stop()
        node.stop()
