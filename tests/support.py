"""What the tests share: the suite's config, the sign-in driver, small assertions.

Imported by conftest.py (which exposes them as fixtures) and by the test modules.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from app.devtools.inbox import Inbox, plain_text
from config import TestingConfig

# Strong per-run secrets, so a production-config app can share the suite's worker.
SUITE_SECRET_KEY = secrets.token_urlsafe(48)
SUITE_JWT_SECRET_KEY = secrets.token_urlsafe(48)


def make_config(redis_url: str, database_url: str, mail_port: int, **overrides: Any) -> type:
    """A TestingConfig subclass wired to the suite's own servers."""
    settings: dict[str, Any] = {
        "SECRET_KEY": SUITE_SECRET_KEY,
        "JWT_SECRET_KEY": SUITE_JWT_SECRET_KEY,
        "OTP_REDIS_URL": f"{redis_url}/0",
        "OTP_CELERY_BROKER_URL": f"{redis_url}/1",
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
        "OTP_RATE_LIMIT_ENABLED": True,
        "OTP_RATE_LIMIT_STORAGE_URI": None,
        "OTP_RATE_LIMIT_REQUEST": "100000 per hour",
        "OTP_RATE_LIMIT_VERIFY": "100000 per hour",
        "OTP_RATE_LIMIT_REFRESH": "100000 per hour",
        "OTP_RATE_LIMIT_LINK": "100000 per hour",
        "OTP_RATE_LIMIT_APPROVAL_POLL": "100000 per hour",
        "OTP_RATE_LIMIT_EMAIL_CHANGE": "100000 per hour",
        "TRUSTED_PROXY_COUNT": 0,
        # Tests build many short-lived apps; a pool would keep each one's database
        # connections open until garbage collection. NullPool closes them on return,
        # so a connection still open at collection time is a real leak.
        "SQLALCHEMY_ENGINE_OPTIONS": {"poolclass": sa.pool.NullPool},
    }
    settings.update(overrides)
    return type("SuiteConfig", (TestingConfig,), settings)


def new_email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"


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


def other_code(code: str) -> str:
    """A code of the same length that is certainly wrong."""
    return f"{(int(code) + 1) % 10 ** len(code):0{len(code)}d}"


def error_code(response: Any) -> str:
    body = response.get_json()
    assert isinstance(body, dict) and "error" in body, response.data
    assert set(body["error"]) >= {"code", "message"}
    return str(body["error"]["code"])


@contextmanager
def redis_monitor(url: str) -> Iterator[list[dict[str, Any]]]:
    """Every command the server runs while the block runs (Redis MONITOR), bounded."""
    seen: list[dict[str, Any]] = []
    start, end = f"monitor-start-{uuid.uuid4().hex}", f"monitor-end-{uuid.uuid4().hex}"
    started = threading.Event()
    control = redis.Redis.from_url(url)

    def listen() -> None:
        with control.monitor() as monitor:
            for command in monitor.listen():
                text = command["command"]
                if start in text:
                    started.set()
                elif end in text:
                    return
                elif started.is_set():
                    seen.append(command)

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    probe = redis.Redis.from_url(url)
    for _ in range(100):  # until MONITOR is surely listening
        probe.echo(start)
        if started.wait(0.05):
            break
    assert started.is_set(), "MONITOR did not start"
    yield seen
    probe.echo(end)
    thread.join(timeout=10)
    assert not thread.is_alive(), "MONITOR did not stop"


class StallingInbox(Inbox):
    """Holds the first message's DATA unanswered: its sender is stuck mid-send."""

    def __init__(self) -> None:
        super().__init__()
        self.stalled = threading.Event()
        self._stall_next = True

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self._stall_next:
            self._stall_next = False
            self.stalled.set()
            await asyncio.sleep(60)  # its sender is killed meanwhile
            return "451 Aborted: the sender went away"
        return await super().handle_DATA(server, session, envelope)
