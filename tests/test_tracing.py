"""Tracing (OTP_TRACING): one trace from request-otp to the SMTP send, and no secret in any span.

The traced app and its worker run in a process of their own (tests/traced_stack.py):
OpenTelemetry's provider and instrumentations are process-wide, and this suite's
other tests must run untraced.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from app.devtools.inbox import Inbox, plain_text
from support import new_email

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
RUN_SPAN = "run/flask_email_signin.send_login_code"
PUBLISH_SPAN = "apply_async/flask_email_signin.send_login_code"


def python_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{TESTS}"}


PUBLISHERS = {"redis": "RedisTaskPublisher", "send_task": "CeleryTaskPublisher"}


@pytest.fixture(params=sorted(PUBLISHERS))
def traced_stack(
    request: pytest.FixtureRequest, redis_url: str, database_url: str, inbox: Inbox, app: Flask
) -> Iterator[Any]:
    """The traced app and worker process (its schema made by the suite's `app` fixture), with
    the Redis fast path or Celery's own send_task publishing the email task."""
    settings = {
        "publisher": request.param,
        "redis_url": redis_url, "database_url": database_url,
        "mail_port": inbox.port,  # type: ignore[attr-defined]
        # A broker of its own: the suite's worker must not take this app's task.
        "broker_url": f"{redis_url}/9",
    }
    process = subprocess.Popen(
        [sys.executable, str(TESTS / "traced_stack.py"), json.dumps(settings)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=python_env(),
    )
    try:
        yield process, PUBLISHERS[request.param]
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        process.stdin.close()
        process.stdout.close()


def send(process: Any, value: dict[str, Any]) -> dict[str, Any]:
    process.stdin.write(json.dumps(value) + "\n")
    process.stdin.flush()
    line = process.stdout.readline()
    assert line, "the traced stack ended without answering"
    return dict(json.loads(line))


def test_one_trace_from_request_otp_to_the_smtp_send_and_no_secret_in_it(
    traced_stack: tuple[Any, str], inbox: Inbox
) -> None:
    stack, publisher = traced_stack
    email = new_email("traced")
    assert send(stack, {"email": email}) == {"status": 202, "publisher": publisher}
    text = plain_text(inbox.wait_for(email, timeout=30)[0])
    code = re.search(r"\b(\d{6})\b", text).group(1)  # type: ignore[union-attr]
    link = re.search(r"https?://[^/\s]+(/auth/link/(\S+))#(\S+)", text)
    assert link, "no sign-in link in the email"
    link_path, tag, link_secret = link.groups()

    result = send(stack, {"code": code, "link_path": link_path})
    assert result["link_page"] == 200 and result["verify"] == 200
    assert result["access_token"] and result["refresh_token"]
    spans: list[dict[str, Any]] = result["spans"]

    def named(name: str) -> list[dict[str, Any]]:
        return [s for s in spans if s["name"] == name]

    def parent_of(span: dict[str, Any]) -> dict[str, Any]:
        parent_id = span["parent_id"]
        found = [s for s in spans if s["context"]["span_id"] == parent_id]
        assert found, f"the parent of {span['name']} was not recorded"
        return found[0]

    # request-otp -> publish -> the worker's run -> SMTP send: one trace, a parent chain.
    [request_span] = named("POST /auth/request-otp")
    [publish] = named(PUBLISH_SPAN)
    [run] = named(RUN_SPAN)
    [smtp] = named("smtp send")
    assert (request_span["kind"], publish["kind"], run["kind"], smtp["kind"]) == (
        "SpanKind.SERVER", "SpanKind.PRODUCER", "SpanKind.CONSUMER", "SpanKind.CLIENT"
    )
    assert request_span["parent_id"] is None
    assert parent_of(publish) == request_span
    assert parent_of(run) == publish
    assert parent_of(smtp) == run
    trace_id = request_span["context"]["trace_id"]
    assert {s["context"]["trace_id"] for s in (publish, run, smtp)} == {trace_id}
    assert smtp["attributes"]["server.port"] > 0

    # Redis, in the request (limits, code store, the broker push) and in the worker.
    redis_spans = [s for s in spans if s["attributes"].get("db.system") == "redis"]
    assert {s["context"]["trace_id"] for s in redis_spans} >= {trace_id}
    assert any(parent_of(s) == publish for s in redis_spans if s["parent_id"])  # the push
    assert any(parent_of(s) == run for s in redis_spans if s["parent_id"])  # the worker's
    for span in redis_spans:
        for command in span["attributes"].get("db.statement", "").splitlines():
            # The command's name ("EVALSHA", "SCRIPT LOAD"), then a "?" for each argument.
            assert re.fullmatch(r"[A-Z][A-Z. ]*[A-Z]( \?)*", command), command

    # SQLAlchemy, in verify-otp (the user is found or made); statements keep placeholders.
    [verify_span] = named("POST /auth/verify-otp")
    verify_trace = verify_span["context"]["trace_id"]
    sql_spans = [s for s in spans if s["attributes"].get("db.system") in ("sqlite", "postgresql")]
    assert any(s["context"]["trace_id"] == verify_trace for s in sql_spans)

    # The link page records its route, not its path (which names the email by its tag).
    [link_span] = named("GET /auth/link/<tag>")
    assert link_span["attributes"]["http.target"] == "/auth/link/<tag>"

    # No secret anywhere: names, attributes, events, links, status, resource.
    everything = json.dumps(spans)
    secrets = {
        "address": email, "local part": email.split("@")[0], "code": code,
        "link secret": link_secret, "link tag": tag,
        "access token": result["access_token"], "refresh token": result["refresh_token"],
    }
    for what, value in secrets.items():
        assert value not in everything, f"the {what} appears in a span"


def test_with_tracing_off_init_app_imports_and_instruments_nothing() -> None:
    script = """
import sys
import redis
from app import create_app
from support import make_config

before = {m for m in sys.modules if m.startswith("opentelemetry")}
app = create_app(make_config("redis://127.0.0.1:1", "sqlite://", 1))
assert app.config["OTP_TRACING"] is False
after = {m for m in sys.modules if m.startswith("opentelemetry")}
# redis-py itself imports the OpenTelemetry API when it is installed; the extension adds nothing.
assert after == before, sorted(after - before)
assert not any(m.startswith("opentelemetry.instrumentation") for m in after)
assert not hasattr(app, "_is_instrumented_by_opentelemetry")
assert not hasattr(redis.Redis.execute_command, "__wrapped__")
print("untraced")
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT,
        env=python_env(), timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "untraced"
