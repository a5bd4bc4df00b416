"""A traced app and worker in a process of their own, for tests/test_tracing.py.

OpenTelemetry's global TracerProvider can be set once per process, and the
instrumentations patch classes and connect Celery signals for the whole process:
run in the suite's own process they would trace every later test. Here they
live and die with this process. It builds the app with OTP_TRACING on and an
SDK provider whose in-memory exporter keeps every span, starts a real worker on
a broker of its own, and takes its steps from the test on stdin:

    -> {"email": ...}                   asks for a code; answers {"status": ...}
    -> {"code": ..., "link_path": ...}  opens the link page, verifies the code;
                                        answers the tokens and every span as JSON
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from celery.contrib.testing.worker import start_worker
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from app import create_app
from support import make_config

RUN_SPAN = "run/flask_email_signin.send_login_code"


def answer(value: dict[str, Any]) -> None:
    print(json.dumps(value), flush=True)


def main(settings: dict[str, Any]) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "traced-stack"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)

    config = make_config(
        settings["redis_url"], settings["database_url"], settings["mail_port"],
        OTP_TRACING=True, OTP_CELERY_BROKER_URL=settings["broker_url"],
        OTP_PASSKEYS=False,
    )
    app = create_app(config)
    celery = app.extensions["celery"]
    if settings["publisher"] == "send_task":
        # A broker key prefix keeps Celery's own send_task (see task_publisher).
        celery.conf.broker_transport_options = {
            **celery.conf.broker_transport_options, "global_keyprefix": "traced:"
        }
    client = app.test_client()
    with start_worker(celery, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        email = json.loads(sys.stdin.readline())["email"]
        requested = client.post("/auth/request-otp", json={"email": email})
        publisher = type(app.extensions["email_signin"].publisher._chosen).__name__
        answer({"status": requested.status_code, "publisher": publisher})

        step = json.loads(sys.stdin.readline())
        link_page = client.get(step["link_path"])
        verified = client.post("/auth/verify-otp", json={"email": email, "otp": step["code"]})
        refresh = client.get_cookie(
            app.config["JWT_REFRESH_COOKIE_NAME"], path=app.config["JWT_REFRESH_COOKIE_PATH"]
        )
        # The worker's run span ends after the send; wait for it, bounded.
        deadline = time.monotonic() + 15
        while not any(s.name == RUN_SPAN for s in exporter.get_finished_spans()):
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
    provider.force_flush()
    answer({
        "link_page": link_page.status_code,
        "verify": verified.status_code,
        "access_token": (verified.get_json() or {}).get("access_token"),
        "refresh_token": refresh.value if refresh is not None else None,
        "spans": [json.loads(span.to_json()) for span in exporter.get_finished_spans()],
    })


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
