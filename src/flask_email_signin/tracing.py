"""OpenTelemetry tracing (OTP_TRACING): the official instrumentations, and nothing secret.

When the setting is on, `instrument_app` traces the app's requests (Flask), the
Redis commands, the app's SQLAlchemy engines and the Celery task; the task
publisher and the mail transport add a span each (`publish_span`, `smtp_span`),
so one trace runs from request-otp through the worker to the SMTP send. Spans go
to the global TracerProvider the host set up: the extension installs no
provider and no exporter. With the setting off nothing here runs and no
OpenTelemetry module is imported (every import is inside a function).

What the spans never carry: a code, a link secret, a token, an address or a
cookie. Redis statements are recorded as "COMMAND ? ?" by the instrumentation
itself; SQL statements keep their placeholders and the commenter stays off;
Celery attributes never include a task's arguments; headers are not captured
(unless the host asks for them with OpenTelemetry's own environment variables).
Two places need a hand, done here: the link page's path names the email by its
tag, so recorded paths are replaced by the route (`<prefix>/link/<tag>`); and a
retried or failed email task records only the error's type, never its message
(an SMTP reply may quote the recipient's address).

The instrumentations patch classes and connect signals for the whole process,
so each is applied once per process, however many apps are made.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask, request

from .settings import settings

TRACER_NAME = "flask_email_signin"
# Attributes of a server span that carry the request's path or query string.
URL_ATTRIBUTES = ("http.target", "http.url", "url.path", "url.full", "url.query")

_lock = threading.Lock()
_instrumented: set[str] = set()
# The email tasks whose retry and failure details are reduced to the error's type.
_task_names: set[str] = set()


def instrument_app(app: Flask, *, task_name: str) -> None:
    """Trace this app's requests, and (once per process) Redis, SQLAlchemy and Celery."""
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    FlaskInstrumentor.instrument_app(
        app, response_hook=_record_route_not_path, enable_commenter=False
    )
    engines = _engines(app)
    with _lock:
        if "redis" not in _instrumented:
            from opentelemetry.instrumentation.redis import RedisInstrumentor

            RedisInstrumentor().instrument()
            _instrumented.add("redis")
        if "sqlalchemy" not in _instrumented:
            from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

            # The engines that exist already; engines made later in this process are
            # traced through the instrumented create_engine. The instrumentation declares
            # SQLAlchemy < 2.1 while it only uses the engine events 2.1 keeps: skip that check.
            SQLAlchemyInstrumentor().instrument(
                engines=engines, enable_commenter=False, skip_dep_check=True
            )
            _instrumented.add("sqlalchemy")
        if "celery" not in _instrumented:
            from celery import signals
            from opentelemetry.instrumentation.celery import CeleryInstrumentor

            CeleryInstrumentor().instrument()
            # Connected after the instrumentation's own receivers, so these run last.
            signals.task_retry.connect(_redact_retry_reason, weak=False)
            signals.task_failure.connect(_redact_failure, weak=False)
            _instrumented.add("celery")
        _task_names.add(task_name)


def _engines(app: Flask) -> list[Any]:
    sqlalchemy = app.extensions.get("sqlalchemy")
    if sqlalchemy is None:
        return []
    with app.app_context():
        return list(sqlalchemy.engines.values())


def _record_route_not_path(span: Any, status: str, headers: Any) -> None:
    """Record the matched route (`/auth/link/<tag>`) where the instrumentation put the path.

    A link page's path names the email by its keyed tag; query strings are
    nobody's business in a trace either. Unmatched paths (404s) keep nothing.
    """
    if span is None or not span.is_recording():
        return
    rule = request.url_rule.rule if request.url_rule is not None else "(unmatched)"
    for key in URL_ATTRIBUTES:
        if key == "url.query":
            span.set_attribute(key, "")
        elif key in ("http.url", "url.full"):
            span.set_attribute(key, f"{request.scheme}://{request.host}{rule}")
        else:
            span.set_attribute(key, rule)


def _redact_retry_reason(sender: Any = None, reason: Any = None, **_: Any) -> None:
    """The email task's retry reason is the mail error's type, never its text."""
    if getattr(sender, "name", None) not in _task_names:
        return
    from opentelemetry import trace

    span = trace.get_current_span()
    if span.is_recording():
        error = getattr(reason, "exc", None) or reason
        span.set_attribute("celery.retry.reason", type(error).__name__)


def _redact_failure(sender: Any = None, exception: Any = None, **_: Any) -> None:
    """A failed email task's status names the error's type (its text may quote an address)."""
    if getattr(sender, "name", None) not in _task_names:
        return
    from opentelemetry import trace
    from opentelemetry.trace import Status, StatusCode

    span = trace.get_current_span()
    if span.is_recording():
        span.set_status(Status(StatusCode.ERROR, type(exception).__name__))


@contextmanager
def publish_span(
    task_name: str, task_id: str, queue: str, headers: dict[str, Any]
) -> Iterator[None]:
    """A PRODUCER span around a hand-built task message, its context injected into `headers`.

    Named and attributed as the Celery instrumentation names `send_task`'s, so a
    trace reads the same whichever publisher ran. The worker's instrumentation
    reads the context back from the task's request (protocol-2 headers).
    """
    from opentelemetry import propagate, trace

    tracer = trace.get_tracer(TRACER_NAME)
    with tracer.start_as_current_span(
        f"apply_async/{task_name}",
        kind=trace.SpanKind.PRODUCER,
        attributes={
            "celery.action": "apply_async",
            "celery.task_name": task_name,
            "messaging.message.id": task_id,
            "messaging.destination": queue,
        },
    ):
        propagate.inject(headers)
        yield


@contextmanager
def smtp_span(server: str, port: int) -> Iterator[None]:
    """A CLIENT span around one SMTP send: the server, never the message or its recipient.

    A failure records the error's type only: an SMTP reply may quote the address.
    """
    if not settings.tracing:
        yield
        return
    from opentelemetry import trace
    from opentelemetry.trace import Status, StatusCode

    tracer = trace.get_tracer(TRACER_NAME)
    with tracer.start_as_current_span(
        "smtp send",
        kind=trace.SpanKind.CLIENT,
        attributes={"server.address": server, "server.port": port},
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield
        except BaseException as error:
            span.set_attribute("error.type", type(error).__name__)
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            raise
