"""Structured JSON logs, each line carrying the id of the request (or task) it belongs to.

The id comes from a trusted-looking `X-Request-ID` header or is generated,
is echoed on the response, and travels to the worker in a Celery message
header (see tasks.py), so one sign-in can be followed from the view to the email.
`configure_logging` is for entry points (the host decides how its process logs).

Nothing secret is logged by this code: log calls name outcomes, never codes,
tokens or cookies. As a second line of defence the formatter masks anything
shaped like a JWT, whoever logged it.
"""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid
from contextvars import ContextVar, Token
from typing import IO, Any

from flask import Blueprint, Response, request
from pythonjsonlogger.json import JsonFormatter

REQUEST_ID_HEADER = "X-Request-ID"
# Accepted from clients as is; anything else is replaced, so a header cannot
# smuggle newlines, markup or a secret-sized payload into every log line.
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_JWT_SHAPE = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
log = logging.getLogger("flask_email_signin.request")


class RequestIdFilter(logging.Filter):
    """Adds `request_id` (None outside any request or task) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


class RedactingJsonFormatter(JsonFormatter):
    """JSON lines: timestamp, level, logger, message, request_id and any extras."""

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        for key, value in log_data.items():
            if isinstance(value, str) and "eyJ" in value:
                log_data[key] = _JWT_SHAPE.sub("[redacted-jwt]", value)
        return log_data


def json_log_handler(stream: IO[str] | None = None) -> logging.Handler:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        RedactingJsonFormatter(
            ["levelname", "name", "message", "request_id"],
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp=True,
        )
    )
    handler.addFilter(RequestIdFilter())
    return handler


def configure_logging(level: str = "INFO") -> None:
    """Send the process's logs to stderr as JSON lines (idempotent; for entry points).

    Python warnings (a library's deprecation, Celery's "running as root") go through
    logging too, so they are JSON lines like the rest.
    """
    logging.captureWarnings(True)
    root = logging.getLogger()
    if not any(getattr(h, "_json_log_handler", False) for h in root.handlers):
        handler = json_log_handler()
        handler._json_log_handler = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level.upper())


def new_request_id() -> str:
    return uuid.uuid4().hex


# Per-request state lives in the WSGI environ, not in `g`: `g` belongs to the app
# context, which a caller (a test harness, a CLI) may keep across several requests.
REQUEST_ID_KEY = "email_signin.request_id"
REQUEST_STARTED_KEY = "email_signin.request_started"
_CONTEXT_RESET_KEY = "email_signin.request_id_reset"


def current_request_id() -> str | None:
    """This request's id (None outside a request of ours, e.g. in a CLI command)."""
    return request_id_var.get()


def request_started_at() -> float | None:
    """perf_counter() when this request's first hook ran (used for latency metrics)."""
    return request.environ.get(REQUEST_STARTED_KEY)


def _bind_request_id(rid: str) -> None:
    request.environ[REQUEST_ID_KEY] = rid
    request.environ[_CONTEXT_RESET_KEY] = request_id_var.set(rid)


def init_request_ids(bp: Blueprint) -> None:
    """Give every request of `bp` an id, log one line per request, echo the id back."""

    def bind_request_id() -> None:
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        _bind_request_id(incoming if _VALID_REQUEST_ID.fullmatch(incoming) else new_request_id())
        request.environ[REQUEST_STARTED_KEY] = time.perf_counter()

    # First of the blueprint's before-request hooks, so lines logged by the others carry it.
    bp.before_request_funcs.setdefault(None, []).insert(0, bind_request_id)

    @bp.after_request
    def log_and_echo_request_id(response: Response) -> Response:
        rid = request.environ.get(REQUEST_ID_KEY)
        if rid is None:  # answered before any before-request hook ran
            rid = new_request_id()
            _bind_request_id(rid)
        response.headers[REQUEST_ID_HEADER] = rid
        started = request_started_at()
        log.info(
            "request",
            extra={
                "method": request.method,
                # The route pattern, never the raw path or query string: those
                # can hold link secrets and ids that do not belong in logs.
                "route": request.url_rule.rule if request.url_rule else None,
                "status": response.status_code,
                "duration_ms": None
                if started is None
                else round((time.perf_counter() - started) * 1000, 2),
            },
        )
        return response

    @bp.teardown_request
    def unbind_request_id(_error: BaseException | None) -> None:
        token: Token[str | None] | None = request.environ.pop(_CONTEXT_RESET_KEY, None)
        if token is not None:
            request_id_var.reset(token)
