"""A Celery app bound to the Flask app (Flask's `celery_init_app` pattern), for hosts without one.

`EmailSignIn.init_app` registers its task on the app's Celery app
(`app.extensions["celery"]`); when the host has none, it makes one here from
OTP_CELERY_BROKER_URL with settings fit for sign-in email: late acks, redelivery
of a dead worker's tasks, no results kept. The worker is then two lines:
`flask_app = create_app()` and `celery_app = flask_app.extensions["celery"]`.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, Task
from flask import Flask

from .redis_client import RedisURLError, is_multi_host_url


def broker_url(config: Any) -> str:
    """OTP_CELERY_BROKER_URL (else OTP_REDIS_URL), refused for a Redis Cluster or Sentinel.

    Celery's Redis transport speaks to one server only, so a cluster- or
    Sentinel-backed state store needs its broker set apart (RabbitMQ or a plain Redis).
    """
    url = str(config.get("OTP_CELERY_BROKER_URL") or config["OTP_REDIS_URL"])
    clustered_default = config.get("OTP_REDIS_CLUSTER") and url == config.get("OTP_REDIS_URL")
    if is_multi_host_url(url) or clustered_default:
        raise RedisURLError(
            "OTP_CELERY_BROKER_URL must name RabbitMQ (amqp://...) or a single Redis server: "
            "Celery's Redis transport does not speak Redis Cluster or redis+sentinel://. "
            "Set OTP_CELERY_BROKER_URL explicitly when OTP_REDIS_URL is a cluster or Sentinel."
        )
    return url


def restore_sweep_seconds(visibility_timeout: int) -> int:
    """A tenth of the visibility timeout, between 1 and 10 s: one cheap ZRANGE a sweep."""
    return max(1, min(10, visibility_timeout // 10))


def celery_settings(config: Any) -> dict[str, Any]:
    """Celery's settings, derived from the Flask config."""
    timeout = float(config["OTP_REDIS_SOCKET_TIMEOUT"])
    visibility = int(config["OTP_CELERY_VISIBILITY_TIMEOUT"])
    return {
        "broker_url": broker_url(config),
        "task_ignore_result": True,
        # Late acks + reject on worker loss: a task whose worker dies is redelivered.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": timeout,
        "broker_transport_options": {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "visibility_timeout": visibility,
            # Every live worker sweeps for unacknowledged tasks of dead workers this often
            # (kombu's default sweep is about every 100 s, whatever the visibility timeout):
            # a killed worker's email is sent again within visibility + this sweep.
            "unacked_restore_interval": restore_sweep_seconds(visibility),
            "unacked_restore_throttle": 1,
        },
        "task_serializer": "json",
        "accept_content": ["json"],
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
    }


def celery_init_app(app: Flask) -> Celery:
    """A Celery app whose tasks run inside `app`, stored in `app.extensions["celery"]`."""

    class FlaskTask(Task):
        def __call__(self, *args: object, **kwargs: object) -> object:
            with app.app_context():
                return self.run(*args, **kwargs)

    celery_app = Celery(app.name, task_cls=FlaskTask)
    celery_app.config_from_object(celery_settings(app.config))
    app.extensions["celery"] = celery_app
    return celery_app
