"""Celery entry point: `celery -A worker worker` runs the sign-in email task inside the app."""

from typing import Any

from celery.signals import worker_ready

from app import create_app
from flask_email_signin import configure_logging, serve_worker_metrics

flask_app = create_app()
celery_app = flask_app.extensions["celery"]
# JSON lines carrying the id of the request that queued each task.
configure_logging(flask_app.config["OTP_LOG_LEVEL"])


@worker_ready.connect
def serve_metrics(**_: Any) -> None:
    """Started once the pool's children exist, so none of them inherits the socket."""
    port = flask_app.config["OTP_WORKER_METRICS_PORT"]
    if port:
        serve_worker_metrics(port, flask_app.config["OTP_WORKER_METRICS_ADDRESS"])
