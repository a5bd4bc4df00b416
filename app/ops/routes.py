"""Operational endpoints: unauthenticated, cheap, never touching user data."""

from __future__ import annotations

from flask import Response, jsonify

from flask_email_signin import APIError, check_readiness, render_metrics

from . import bp


class NotReady(APIError):
    status = 503
    code = "not_ready"
    message = "A service this app needs is unreachable."


@bp.get("/healthz")
def healthz() -> Response:
    """Liveness: the process answers (no dependency is checked)."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> Response:
    """Readiness: Redis, the database and the broker all answer; 503 names any that does not."""
    checks = check_readiness()
    failed = sorted(name for name, result in checks.items() if result != "ok")
    if failed:
        raise NotReady(
            f"Not ready: {', '.join(failed)} unreachable.",
            headers={"Retry-After": "5"},
            details={"checks": checks, "failed": failed},
        )
    return jsonify(status="ready", checks=checks)


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus exposition of the app's counters and latency histograms."""
    return render_metrics()
