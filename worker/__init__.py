"""Celery entry point: `celery -A worker worker` runs the sign-in email task inside the app."""

import logging
from typing import Any

from celery.apps.worker import install_worker_term_handler
from celery.signals import setup_logging, worker_ready, worker_shutting_down

from app import create_app
from flask_email_signin import configure_logging, serve_worker_metrics

flask_app = create_app()
celery_app = flask_app.extensions["celery"]
# JSON lines carrying the id of the request that queued each task.
configure_logging(flask_app.config["OTP_LOG_LEVEL"])


@setup_logging.connect
def log_json_lines(**_: Any) -> None:
    """Celery leaves logging to us when this signal has a receiver: its start-up, ready, task
    and shutdown lines then go through the JSON handler above, not its own plain format."""
    configure_logging(flask_app.config["OTP_LOG_LEVEL"])


@worker_ready.connect
def quiet_warm_shutdown(sender: Any, **_: Any) -> None:
    """Celery writes "worker: Warm shutdown" on SIGTERM straight to stdout, in plain text;
    its handler again without that line, which log_shutdown writes as JSON instead."""
    install_worker_term_handler(sender.controller, verbose=False)


@worker_shutting_down.connect
def log_shutdown(how: str = "Warm", **_: Any) -> None:
    logging.getLogger("celery.apps.worker").info("worker: %s shutdown", how)


@worker_ready.connect
def serve_metrics(**_: Any) -> None:
    """Started once the pool's children exist, so none of them inherits the socket."""
    port = flask_app.config["OTP_WORKER_METRICS_PORT"]
    if port:
        serve_worker_metrics(port, flask_app.config["OTP_WORKER_METRICS_ADDRESS"])
