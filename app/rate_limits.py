"""Per-client-IP rate limits: Flask-Limiter on Redis, with one storage per app.

Limits are declared on the routes with `limiter.limit_from_config("OTP_RATE_LIMIT_...")`
and read from the config on every request, so a deployment (or a test) can change them
without a restart. The client is `request.remote_addr`: the socket peer, or the address
that `TRUSTED_PROXY_COUNT` trusted proxies reported (ProxyFix); a spoofed
`X-Forwarded-For` from a client never counts when no proxy is trusted.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app, has_app_context, request
from flask_limiter import Limiter, RouteLimit
from limits.storage import Storage
from limits.strategies import RateLimiter


def client_address() -> str:
    """The rate-limit key: the client's IP address.

    An unknown address shares one bucket with every other unknown one, rather than
    escaping the limit (Flask-Limiter skips a limit whose key is empty).
    """
    return request.remote_addr or "unknown"


def storage_uri(config: Mapping[str, Any]) -> str:
    """`RATELIMIT_STORAGE_URI`, else the state store's `REDIS_URL` in the form `limits` reads."""
    uri = str(config.get("RATELIMIT_STORAGE_URI") or config["REDIS_URL"])
    if config.get("REDIS_CLUSTER") and uri.startswith("redis://"):
        # A plain URL marked as a cluster node: `limits` needs its cluster scheme.
        uri = "redis+cluster://" + uri.removeprefix("redis://").split("/", 1)[0]
    return uri


@dataclass(frozen=True)
class AppRateLimits:
    """One app's switch, storage and strategy (kept in `app.extensions["rate_limit"]`)."""

    enabled: bool
    storage: Storage | None = None
    strategy: RateLimiter | None = None


class PerAppLimiter(Limiter):
    """Flask-Limiter, with the on/off switch and the storage kept per app.

    Flask-Limiter keeps one storage on the extension object, so binding a second app
    (one process may host several, as the tests do) would send every app's counters
    to the last app's Redis, and one app's `RATELIMIT_ENABLED=false` would switch off
    all of them. Here each app keeps its own in `app.extensions["rate_limit"]`; the
    limits declared on routes are shared, like the routes.

    Config keys: Flask-Limiter's own `RATELIMIT_*` (`RATELIMIT_ENABLED`,
    `RATELIMIT_STORAGE_URI` defaulting to `REDIS_URL`, `RATELIMIT_STRATEGY`, ...);
    `REDIS_SOCKET_TIMEOUT` bounds the storage's socket and connect waits, so a dead
    Redis makes a quick 503 here too. Storage errors are not swallowed: without Redis
    nothing can be limited, and the request fails closed with a 503.
    """

    def __init__(self) -> None:
        super().__init__(key_func=client_address)
        self.request_filter(self._disabled_for_this_app)

    def init_app(self, app: Flask) -> None:
        if "rate_limit" in app.extensions:
            raise RuntimeError("The rate limiter is already registered on this app.")
        config = app.config
        enabled = bool(config.setdefault("RATELIMIT_ENABLED", True))
        app.extensions["rate_limit"] = AppRateLimits(enabled=enabled)
        if not enabled:
            return  # no hooks; the routes' limits are skipped by the request filter
        timeout = float(config.get("REDIS_SOCKET_TIMEOUT", 1.0))
        config["RATELIMIT_STORAGE_URI"] = storage_uri(config)
        config["RATELIMIT_STORAGE_OPTIONS"] = {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            **(config.get("RATELIMIT_STORAGE_OPTIONS") or {}),
        }
        self._strategy = None  # read this app's RATELIMIT_STRATEGY, not the first app's
        super().init_app(app)
        app.extensions["rate_limit"] = AppRateLimits(
            enabled=True, storage=self._storage, strategy=self._limiter
        )

    def limit_from_config(self, key: str) -> RouteLimit:
        """A per-client limit whose value (e.g. "20 per 10 minutes") is `config[key]`."""
        return self.limit(lambda: str(current_app.config[key]))

    @staticmethod
    def _app_limits() -> AppRateLimits | None:
        if not has_app_context():
            return None
        limits = current_app.extensions.get("rate_limit")
        return limits if isinstance(limits, AppRateLimits) else None

    def _disabled_for_this_app(self) -> bool:
        limits = self._app_limits()
        return limits is None or not limits.enabled

    @property
    def storage(self) -> Storage:
        limits = self._app_limits()
        if limits is None or limits.storage is None:
            return super().storage
        return limits.storage

    @property
    def limiter(self) -> RateLimiter:
        limits = self._app_limits()
        if limits is None or limits.strategy is None:
            return super().limiter
        return limits.strategy

    def retry_after(self) -> int:
        """Whole seconds until the limit this request broke lets it through again."""
        breached = self.current_limit
        if breached is None:
            return 60
        reset_time = breached.window[0]  # when the breached window ends (epoch seconds)
        return max(1, math.ceil(reset_time - time.time()))
