"""Fixtures: a private Redis server, a capturing SMTP server, a real Celery worker.

Nothing here touches a service the suite did not start itself, except the
PostgreSQL server named by TEST_DATABASE_URL, where the suite creates and
drops a database of its own.
"""

from __future__ import annotations

import gc
import os
import re
import secrets
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

from app import create_app
from app.devtools.inbox import Inbox, plain_text, start_inbox
from app.devtools.redis_server import free_port, start_server
from config import TestingConfig


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


# Strong per-run secrets, so a production-config app can share the suite's worker.
SUITE_SECRET_KEY = secrets.token_urlsafe(48)
SUITE_JWT_SECRET_KEY = secrets.token_urlsafe(48)


def make_config(redis_url: str, database_url: str, mail_port: int, **overrides: Any) -> type:
    """A TestingConfig subclass wired to the suite's own servers."""
    settings: dict[str, Any] = {
        "SECRET_KEY": SUITE_SECRET_KEY,
        "JWT_SECRET_KEY": SUITE_JWT_SECRET_KEY,
        "REDIS_URL": f"{redis_url}/0",
        "CELERY_BROKER_URL": f"{redis_url}/1",
        "SQLALCHEMY_DATABASE_URI": database_url,
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": mail_port,
        "MAIL_USE_TLS": False,
        "MAIL_USE_SSL": False,
        "MAIL_USERNAME": None,
        "MAIL_PASSWORD": None,
        "OTP_DEV_MAGIC_CODE": None,
        "OTP_ALLOW_SIGNUP": True,
        # The suite sends hundreds of requests from 127.0.0.1: generous per-IP limits,
        # still enforced; tests/test_rate_limits.py lowers them to prove each one.
        "RATELIMIT_ENABLED": True,
        "RATELIMIT_STORAGE_URI": None,
        "OTP_RATE_LIMIT_REQUEST": "100000 per hour",
        "OTP_RATE_LIMIT_VERIFY": "100000 per hour",
        "OTP_RATE_LIMIT_REFRESH": "100000 per hour",
        "TRUSTED_PROXY_COUNT": 0,
        # Tests build many short-lived apps; a pool would keep each one's database
        # connections open until garbage collection. NullPool closes them on return,
        # so a connection still open at collection time is a real leak.
        "SQLALCHEMY_ENGINE_OPTIONS": {"poolclass": sa.pool.NullPool},
    }
    settings.update(overrides)
    return type("SuiteConfig", (TestingConfig,), settings)


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


def new_email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"


@pytest.fixture
def email() -> str:
    """A fresh address, so tests never share sign-in state."""
    return new_email()


class AuthActions:
    """Drives the sign-in flow the way a client would."""

    def __init__(self, client: FlaskClient, inbox: Inbox, app: Flask) -> None:
        self.client, self.inbox, self.app = client, inbox, app

    def request_code(self, email: str) -> Any:
        return self.client.post("/auth/request-otp", json={"email": email})

    def read_code_from_inbox(self, email: str, count: int = 1) -> str:
        message = self.inbox.wait_for(email, count=count)[count - 1]
        length = self.app.config["OTP_LENGTH"]
        match = re.search(rf"\b(\d{{{length}}})\b", plain_text(message))
        assert match, "no code in the email"
        return match.group(1)

    def read_link_from_inbox(self, email: str, count: int = 1) -> str:
        """The one-click sign-in link in the `count`-th email to `email`."""
        message = self.inbox.wait_for(email, count=count)[count - 1]
        match = re.search(r"https?://\S+/auth/link/\S+", plain_text(message))
        assert match, "no sign-in link in the email"
        return match.group(0)

    def verify(self, email: str, otp: str) -> Any:
        return self.client.post("/auth/verify-otp", json={"email": email, "otp": otp})

    def sign_in(self, email: str) -> Any:
        assert self.request_code(email).status_code == 202
        response = self.verify(email, self.read_code_from_inbox(email))
        assert response.status_code == 200, response.get_json()
        return response

    def csrf_header(self, kind: str = "access") -> dict[str, str]:
        cookie = self.client.get_cookie(f"csrf_{kind}_token")
        assert cookie is not None, f"no csrf_{kind}_token cookie"
        return {"X-CSRF-TOKEN": cookie.value}


@pytest.fixture
def auth(client: FlaskClient, inbox: Inbox, app: Flask, celery_worker: object) -> AuthActions:
    """Sign-in helper with a running worker and the capturing inbox."""
    return AuthActions(client, inbox, app)


def other_code(code: str) -> str:
    """A code of the same length that is certainly wrong."""
    return f"{(int(code) + 1) % 10 ** len(code):0{len(code)}d}"


def error_code(response: Any) -> str:
    body = response.get_json()
    assert isinstance(body, dict) and "error" in body, response.data
    assert set(body["error"]) >= {"code", "message"}
    return str(body["error"]["code"])


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Say up front which optional local services (RabbitMQ, docker compose) are checked."""
    from local_services import status_lines

    return status_lines()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Repeat, at the end, any optional check that did not run on this machine."""
    from local_services import status_lines

    missing = [line for line in status_lines() if "NOT RUN" in line]
    if missing:
        terminalreporter.section("checks not run on this machine", yellow=True)
        for line in missing:
            terminalreporter.write_line(line, yellow=True)
