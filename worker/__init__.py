"""Celery entry point: `celery -A worker worker` runs the sign-in email task inside the app."""

import logging
from pathlib import Path
from typing import Any

from celery import bootsteps
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


class Heartbeat(bootsteps.StartStopStep):
    """Touches OTP_WORKER_HEARTBEAT_FILE every few seconds while the worker consumes.

    The timer runs in the consumer's own event loop and only between a broker connection's
    start and its loss: a file older than a few intervals means a worker that takes no tasks
    (broker unreachable, or a process that went on without consuming), which a liveness
    check can then restart.
    """

    requires = ("celery.worker.consumer.tasks:Tasks",)
    INTERVAL_SECONDS = 5.0

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        path = flask_app.config.get("OTP_WORKER_HEARTBEAT_FILE")
        self.path = Path(path) if path else None
        self.timer_entry: Any = None

    def start(self, parent: Any) -> None:
        if self.path is None:
            return
        self.beat()
        self.timer_entry = parent.timer.call_repeatedly(self.INTERVAL_SECONDS, self.beat)

    def stop(self, parent: Any) -> None:
        if self.timer_entry is not None:
            self.timer_entry.cancel()
            self.timer_entry = None

    shutdown = stop

    def beat(self) -> None:
        assert self.path is not None
        self.path.touch()


celery_app.steps["consumer"].add(Heartbeat)
