"""No code, token or link secret in Redis, in the broker after delivery, or in any log."""

from __future__ import annotations

import base64
import json
import logging
import re
import time
import uuid
from typing import Any

import pytest
import redis

from support import AuthActions


def stored_bytes(client: redis.Redis) -> bytes:
    """Every key and value of one Redis database, broker message bodies decoded."""
    blob = b""
    for key in client.scan_iter():
        kind = client.type(key)
        values: list[bytes] = []
        if kind == b"string":
            values = [client.get(key) or b""]
        elif kind == b"hash":
            values = [k + b"=" + v for k, v in client.hgetall(key).items()]
        elif kind == b"list":
            values = client.lrange(key, 0, -1)
        elif kind == b"set":
            values = list(client.smembers(key))
        elif kind == b"zset":
            values = [member for member, _ in client.zrange(key, 0, -1, withscores=True)]
        blob += key + b"\n" + b"\n".join(values + [decoded_bodies(v) for v in values]) + b"\n"
    return blob


def decoded_bodies(value: bytes) -> bytes:
    """Kombu keeps a message's body base64-encoded inside JSON: decode any it holds."""
    try:
        data = json.loads(value)
    except (ValueError, UnicodeDecodeError):
        return b""
    found: list[bytes] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("body"), str):
                try:
                    found.append(base64.b64decode(node["body"], validate=True))
                except ValueError:
                    found.append(node["body"].encode())
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(data)
    return b"\n".join(found)


def wait_until_acknowledged(broker: redis.Redis, timeout: float = 15.0) -> None:
    """Late acks: the task leaves the broker's `unacked` hash once the worker is done."""
    deadline = time.monotonic() + timeout
    while broker.hlen("unacked") or broker.llen("celery"):
        assert time.monotonic() < deadline, "the email task was never acknowledged"
        time.sleep(0.05)


def test_the_broker_scan_would_see_a_queued_secret(auth: AuthActions) -> None:
    """The scanner itself works: a marker in a queued task's kwargs is found."""
    broker = redis.Redis.from_url(auth.app.config["OTP_CELERY_BROKER_URL"])
    marker, queue = f"marker-{uuid.uuid4().hex}", f"scan-check-{uuid.uuid4().hex[:8]}"
    auth.app.extensions["celery"].send_task("scan.check", kwargs={"m": marker}, queue=queue)
    try:
        assert marker.encode() in stored_bytes(broker)
    finally:
        broker.delete(queue)


def test_a_full_sign_in_leaves_no_secret_in_redis_broker_or_logs(
    auth: AuthActions, email: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Everything the app, Celery and the in-process worker log, at every level.
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="celery")
    assert auth.request_code(email).status_code == 202
    message = auth.inbox.wait_for(email)[0]
    code = auth.read_code_from_inbox(email)
    signed_in = auth.verify(email, code)
    assert signed_in.status_code == 200
    assert auth.client.get("/auth/me").status_code == 200
    refresh_cookie = auth.client.get_cookie("refresh_token", path="/auth")
    assert refresh_cookie is not None
    refreshed = auth.client.post("/auth/refresh", headers=auth.csrf_header("refresh"))
    assert refreshed.status_code == 200

    secrets = {
        "code": code,
        "access token": signed_in.get_json()["access_token"],
        "refreshed access token": refreshed.get_json()["access_token"],
        "refresh token": refresh_cookie.value,
        "csrf token": auth.csrf_header()["X-CSRF-TOKEN"],
    }
    link = re.search(r"/auth/link/\S+", message.get_body(preferencelist=("plain",)).get_content())
    if link:  # the one-click link's secret, when the email carries one
        secrets["link secret"] = re.split(r"[#/=?]", link.group(0))[-1]
    assert auth.client.post("/auth/logout", headers=auth.csrf_header()).status_code == 200

    broker = redis.Redis.from_url(auth.app.config["OTP_CELERY_BROKER_URL"])
    wait_until_acknowledged(broker)
    state = redis.Redis.from_url(auth.app.config["OTP_REDIS_URL"])
    at_rest = stored_bytes(state) + stored_bytes(broker)

    # The capture really holds the worker's side too (its thread logs the send).
    assert any(
        record.name == "flask_email_signin.tasks" and "sent" in record.getMessage()
        for record in caplog.records
    ), [record.getMessage() for record in caplog.records]
    # "mail.log" is aiosmtpd, the receiving mail server: it holds the email by design.
    ours = [record for record in caplog.records if not record.name.startswith("mail.log")]
    logged = "\n".join(f"{record.getMessage()} {record.__dict__!r}" for record in ours)

    for name, secret in secrets.items():
        assert len(secret) >= 6, name
        assert secret.encode() not in at_rest, f"{name} found in Redis or the broker"
        assert secret not in logged, f"{name} found in the logs"
