"""The product's app plus two bench-only routes, so production has no extra endpoint.

`/bench/ping` answers a constant JSON document through the same app, WSGI
server and middleware: a host view that the extension does not touch, so its
cost over the bare ceiling (bench/bare.py) is what the app-wide part of the
extension adds to every request of a host.
`/bench/protected` is the host view of the README ("Protecting your own views"):
plain `@jwt_required()`, so its cost over the ceiling is exactly what the
product adds to every protected request of a host app (token checks and the
session's one Redis round trip), without a database query of its own.
"""

from __future__ import annotations

from flask import Flask, Response, jsonify
from flask_jwt_extended import get_jwt_identity, jwt_required

from app import create_app
from flask_email_signin import configure_logging


def create_bench_app(config_class: type | None = None) -> Flask:
    """The product app (config from the environment) with `/bench/ping` added.

    It logs as `wsgi.py` does in production (a JSON line per request of the
    extension), so that cost is measured too.
    """
    bench_app = create_app(config_class)
    configure_logging(bench_app.config["OTP_LOG_LEVEL"])

    @bench_app.get("/bench/ping")
    def ping() -> Response:
        """A trivial JSON answer: no Redis, no database, no validation."""
        return jsonify(status="ok")

    @bench_app.get("/bench/protected")
    @jwt_required()
    def protected() -> Response:
        """A host app's protected view: who is signed in, nothing else."""
        return jsonify(user=get_jwt_identity())

    return bench_app

