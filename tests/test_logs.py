"""JSON log lines with a request id, from the views to the worker; no secret in them."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from live_stack import (
    ROOT,
    WebNode,
    node_environment,
    private_redis,
    spawn,
    stop_all,
    wait_until,
)

from app.devtools.inbox import Inbox
from flask_email_signin.logs import (
    REQUEST_ID_HEADER,
    configure_logging,
    json_log_handler,
    request_id_var,
)
from support import AuthActions, new_email


class NotTheTestMailServer(logging.Filter):
    """aiosmtpd ("mail.log") is the suite's receiving server: it logs the email by design."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith("mail.log")


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """Every record of the process, formatted as in production, at DEBUG."""
    stream = io.StringIO()
    handler = json_log_handler(stream)
    handler.addFilter(NotTheTestMailServer())
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


def parsed(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_a_full_sign_in_logs_json_lines_without_secrets(
    auth: AuthActions, email: str, log_lines: io.StringIO
) -> None:
    requested = auth.request_code(email)
    request_id = requested.headers[REQUEST_ID_HEADER]
    code = auth.read_code_from_inbox(email)
    signed_in = auth.verify(email, code)
    access = signed_in.get_json()["access_token"]
    cookies = {c.key: c.value for c in auth.client._cookies.values()}
    assert auth.client.get("/auth/me").status_code == 200
    refreshed = auth.client.post("/auth/refresh", headers=auth.csrf_header("refresh"))
    assert refreshed.status_code == 200
    new_access = refreshed.get_json()["access_token"]
    new_cookies = {c.key: c.value for c in auth.client._cookies.values()}
    assert auth.client.post("/auth/logout", headers=auth.csrf_header()).status_code == 200

    text = log_lines.getvalue()
    lines = parsed(log_lines)  # every line is one JSON object
    assert lines and all({"timestamp", "level", "logger", "message"} <= set(line) for line in lines)
    assert all("request_id" in line for line in lines)

    # One line per request, each with its own id, the route pattern and the status.
    requests = [line for line in lines if line["logger"] == "flask_email_signin.request"]
    assert [r["route"] for r in requests] == [
        "/auth/request-otp", "/auth/verify-otp", "/auth/me", "/auth/refresh", "/auth/logout",
    ]
    assert all(r["request_id"] and r["status"] < 400 for r in requests)
    assert len({r["request_id"] for r in requests}) == len(requests)

    # The worker's lines about this email carry the id of the request that queued it.
    sent = [line for line in lines if line["message"] == "login email sent"]
    assert sent and sent[0]["request_id"] == request_id

    secrets = {"code": code, "access token": access, "refreshed access token": new_access}
    secrets |= {f"cookie {k}": v for k, v in {**cookies, **new_cookies}.items()}
    for name, value in secrets.items():
        assert value not in text, f"{name} found in the logs"


def test_request_ids_are_generated_and_echoed(client: Any) -> None:
    first = client.get("/auth/openapi.json").headers[REQUEST_ID_HEADER]
    second = client.get("/auth/openapi.json").headers[REQUEST_ID_HEADER]
    assert first and second and first != second
    given = client.get("/auth/openapi.json", headers={REQUEST_ID_HEADER: "lb-7f3a.42"})
    assert given.headers[REQUEST_ID_HEADER] == "lb-7f3a.42"


@pytest.mark.parametrize("bad", ["", "x" * 129, "two words", "a\tb", "<script>", "é"])
def test_unsafe_incoming_request_ids_are_replaced(client: Any, bad: str) -> None:
    response = client.get("/auth/openapi.json", headers={REQUEST_ID_HEADER: bad})
    echoed = response.headers[REQUEST_ID_HEADER]
    assert echoed != bad and len(echoed) == 32


def test_error_responses_and_their_log_lines_carry_the_id(
    client: Any, log_lines: io.StringIO
) -> None:
    response = client.post("/auth/verify-otp", data="{", content_type="application/json",
                           headers={REQUEST_ID_HEADER: "trace-400"})
    assert response.status_code == 400 and response.headers[REQUEST_ID_HEADER] == "trace-400"
    line = next(r for r in parsed(log_lines) if r["logger"] == "flask_email_signin.request")
    assert line["request_id"] == "trace-400" and line["status"] == 400
    assert request_id_var.get() is None  # unbound once the request is over


def test_jwt_shaped_values_are_masked_whoever_logs_them(log_lines: io.StringIO) -> None:
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"
    logging.getLogger("some.library").warning("header was Bearer %s", token)
    line = parsed(log_lines)[-1]
    assert token not in log_lines.getvalue() and "[redacted-jwt]" in line["message"]


def test_configure_logging_installs_one_json_handler() -> None:
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    try:
        configure_logging("WARNING")
        configure_logging("WARNING")
        added = [h for h in root.handlers if h not in before]
        assert len(added) == 1 and root.level == logging.WARNING
    finally:
        for handler in root.handlers[:]:
            if handler not in before:
                root.removeHandler(handler)
        root.setLevel(level)


def non_json_lines(text: str) -> list[str]:
    """The lines of a process's output that are not one JSON object each."""
    bad = []
    for line in text.splitlines():
        try:
            if not isinstance(json.loads(line), dict):
                bad.append(line)
        except ValueError:
            bad.append(line)
    return bad


@pytest.mark.live
def test_gunicorn_and_the_worker_write_only_json_lines_in_production(
    app: Any, redis_url: str, database_url: str, inbox: Inbox, tmp_path: Path
) -> None:
    """gunicorn and the Celery worker as the Procfile starts them, with the production config
    and the access log on: every line either writes, start-up to shutdown, is JSON."""
    with private_redis(tmp_path / "broker") as broker:  # this worker alone takes the task
        env = node_environment(
            redis_url=f"{redis_url}/0", broker_url=f"{broker}/0", database_url=database_url,
            mail_port=inbox.port,  # type: ignore[attr-defined]
            APP_ENV="production", GUNICORN_ACCESS_LOG="-",
            OTP_LINK_BASE_URL="http://localhost:8000",
        )
        procfile = dict(
            line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line
        )
        command = procfile["worker"].split()
        assert command[:2] == ["celery", "--quiet"]
        worker = spawn([sys.executable, "-m", *command, "--hostname", "json-logs@%h"], env,
                       tmp_path / "worker.log")
        web = WebNode(env, tmp_path, "web")
        try:
            web.wait_ready()
            wait_until(lambda: " ready." in (tmp_path / "worker.log").read_text(), 30,
                       "the worker to be ready")
            email = new_email("json-logs")
            assert web.post_json("/auth/request-otp", {"email": email}).status == 202
            inbox.wait_for(email)
        finally:
            stop_all([web.process, worker])
    for name in ("web.log", "worker.log"):
        text = (tmp_path / name).read_text()
        assert text.strip() and non_json_lines(text) == [], f"{name}:\n{text}"
    web_lines = [json.loads(line) for line in (tmp_path / "web.log").read_text().splitlines()]
    loggers = {line["logger"] for line in web_lines}
    assert {"gunicorn.error", "gunicorn.access", "flask_email_signin.request"} <= loggers
    worker_lines = [json.loads(line) for line in (tmp_path / "worker.log").read_text().splitlines()]
    assert any(line["message"] == "worker: Warm shutdown" for line in worker_lines)
    assert any("ready." in line["message"] for line in worker_lines)
    assert any(line["logger"].startswith("celery") and "succeeded" in line["message"]
               for line in worker_lines)
