"""Prometheus metrics of the sign-in flow; names start with `email_signin_`.

Metric objects live at module level in prometheus-client's default registry,
so the host's own /metrics (or `render_metrics`) exposes them next to its own.
Under gunicorn (several processes) set `PROMETHEUS_MULTIPROC_DIR` to an empty
directory shared by the web processes (and the worker, on the same host):
each process then writes its counts there, and /metrics adds them up.
prometheus-client reads the variable at import time, so it must be set in
the environment before the process starts, and the directory emptied on start.
"""

from __future__ import annotations

import os
import time

from flask import Blueprint, Response, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)

from .logs import request_started_at

CODES_REQUESTED = Counter(
    "email_signin_codes_requested_total",
    "Sign-in code requests, by result: issued, cooldown, hourly_limit, unavailable.",
    ["result"],
)
VERIFICATIONS = Counter(
    "email_signin_verifications_total",
    "Code checks, by outcome: ok, wrong, expired, exhausted, locked, rate_limited.",
    ["outcome"],
)
EMAILS = Counter(
    "email_signin_emails_total",
    "Sign-in emails handled by the worker, by result: sent, failed, retried.",
    ["result"],
)
TOKENS_REFRESHED = Counter(
    "email_signin_tokens_refreshed_total", "Refresh tokens exchanged (and rotated) successfully."
)
TOKENS_REVOKED = Counter(
    "email_signin_tokens_revoked_total",
    "Sessions whose tokens were revoked, by reason: logout, session_revoked, logout_all, "
    "refresh_reused, admin, deactivated.",
    ["reason"],
)
WEBHOOK_DELIVERIES = Counter(
    "email_signin_webhook_deliveries_total",
    "Webhook delivery attempts by the worker, by outcome: delivered, retried, dead, dropped "
    "(its endpoint no longer configured).",
    ["outcome"],
)
REQUESTS = Counter(
    "email_signin_http_requests_total",
    "HTTP requests to the extension's routes, by route and status.",
    ["method", "endpoint", "status"],
)
REQUEST_LATENCY = Histogram(
    "email_signin_http_request_duration_seconds",
    "Time to answer a request to the extension's routes, by route.",
    ["method", "endpoint"],
)

def multiprocess_mode() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def metrics_registry() -> CollectorRegistry:
    """This process's registry, or one that adds up every process's files when scraped."""
    if multiprocess_mode():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


def render_metrics() -> Response:
    """The exposition text of this process, or of every process of the host."""
    body = generate_latest(metrics_registry())
    return Response(body, mimetype=None, content_type=CONTENT_TYPE_LATEST)


def serve_worker_metrics(port: int, address: str) -> None:
    """A /metrics endpoint in the Celery worker's main process (a thread of its own).

    A worker often runs where no web process can read its counts (another container
    or host). Its prefork children count in their own memory, so only the multiprocess
    files make their counts visible here: PROMETHEUS_MULTIPROC_DIR is required then.
    """
    start_http_server(port, addr=address, registry=metrics_registry())


def init_request_metrics(bp: Blueprint) -> None:
    """Count and time every request of `bp` by its route pattern (bounded label values)."""

    @bp.after_request
    def observe_request(response: Response) -> Response:
        # The route pattern keeps label values bounded: /auth/sessions/<sid>, never ids.
        endpoint = request.url_rule.rule if request.url_rule else "<unmatched>"
        REQUESTS.labels(request.method, endpoint, str(response.status_code)).inc()
        started = request_started_at()
        if started is not None:
            REQUEST_LATENCY.labels(request.method, endpoint).observe(
                time.perf_counter() - started
            )
        return response
