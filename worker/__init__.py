"""Celery entry point: `celery -A worker worker` runs tasks inside the Flask app."""

import socket
from typing import Any

from celery.signals import worker_ready

from app import create_app
from app.logs import configure_logging
from app.metrics import serve_worker_metrics

flask_app = create_app()
celery_app = flask_app.extensions["celery"]
# JSON lines carrying the id of the request that queued each task.
configure_logging(flask_app.config["OTP_LOG_LEVEL"])

# Flask-Mail's SMTP connections have no timeout of their own: a stalled mail server
# must fail the send (and schedule a retry) instead of hanging the worker forever.
socket.setdefaulttimeout(flask_app.config["MAIL_TIMEOUT_SECONDS"])


@worker_ready.connect
def serve_metrics(**_: Any) -> None:
    """Started once the pool's children exist, so none of them inherits the socket."""
    port = flask_app.config["OTP_WORKER_METRICS_PORT"]
    if port:
        serve_worker_metrics(port, flask_app.config["OTP_WORKER_METRICS_ADDRESS"])
