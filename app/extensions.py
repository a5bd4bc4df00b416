"""Extension objects, created once and bound to an app in `create_app`."""

from __future__ import annotations

from typing import cast

import redis
from flask import Flask, current_app
from flask_jwt_extended import JWTManager
from flask_mail import Mail
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy

from .rate_limits import PerAppLimiter
from .redis_client import redis_from_url


class RedisStore:
    """Binds one Redis client per app, with bounded timeouts.

    Short socket and connect timeouts turn a dead Redis into a quick 503
    instead of a hung request. `REDIS_URL` may name one server, a Redis Cluster
    or a Sentinel-managed master (see app.redis_client). Config keys: `REDIS_URL`,
    `REDIS_CLUSTER`, `REDIS_SOCKET_TIMEOUT`.
    """

    def init_app(self, app: Flask) -> None:
        if "redis" in app.extensions:
            raise RuntimeError("RedisStore is already registered on this app.")
        timeout = float(app.config.get("REDIS_SOCKET_TIMEOUT", 1.0))
        app.extensions["redis"] = redis_from_url(
            app.config["REDIS_URL"],
            cluster=bool(app.config.get("REDIS_CLUSTER", False)),
            timeout=timeout,
        )

    @property
    def client(self) -> redis.Redis:
        # A RedisCluster offers the same commands, scripts and pipelines.
        return cast(redis.Redis, current_app.extensions["redis"])


# Sessions live for one request or task: objects need not be reloaded after a commit
# (reloading would cost a SELECT per sign-in just to read back what was written).
db = SQLAlchemy(session_options={"expire_on_commit": False})
migrate = Migrate()
mail = Mail()
jwt = JWTManager()
redis_store = RedisStore()
limiter = PerAppLimiter()
