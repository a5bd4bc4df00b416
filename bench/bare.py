"""The ceiling of the benchmark: a bare `Flask()` app with one JSON view, nothing else.

Served by the same gunicorn configuration as the product (bench/gunicorn_conf.py),
so the CPU it spends per request is what Flask, Werkzeug and gunicorn cost by
themselves on this machine; every scenario is reported as a multiple of it.
"""

from __future__ import annotations

from flask import Flask, Response, jsonify

app = Flask(__name__)


@app.get("/bench/ping")
def ping() -> Response:
    """A trivial JSON answer."""
    return jsonify(status="ok")
