"""Per-client-IP limits on the extension's endpoints, on Redis, through `limits` directly.

The `limits` library (the engine under Flask-Limiter) counts the windows; calling it
from a view decorator keeps the limits on our routes only, per app, whether or not
the host binds Flask-Limiter for its own views, and costs one Redis round trip per
limited request (Flask-Limiter's app-wide hooks add work to every request of the app).

The limit strings (e.g. "20 per 10 minutes") are read from the config on every
request, so a deployment or a test can change them without a restart. The client
is `request.remote_addr`: the socket peer, or what the host's ProxyFix trusted; a
spoofed `X-Forwarded-For` never counts by itself. Storage errors are not swallowed:
without Redis nothing can be limited, and the request fails closed with a 503.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from flask import request
from limits import RateLimitItem, parse_many
from limits.storage import storage_from_string
from limits.strategies import (
    FixedWindowRateLimiter,
    MovingWindowRateLimiter,
    RateLimiter,
    SlidingWindowCounterRateLimiter,
)

from .errors import RateLimited
from .i18n import gettext, ngettext
from .i18n import lazy_gettext as _
from .redis_client import patiently
from .settings import settings
from .state import current_state

STRATEGIES: Mapping[str, type[RateLimiter]] = {
    "fixed-window": FixedWindowRateLimiter,
    "moving-window": MovingWindowRateLimiter,
    "sliding-window-counter": SlidingWindowCounterRateLimiter,
}
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class RateLimits:
    """One app's limiter (None when OTP_RATE_LIMIT_ENABLED is off).

    `foldable`: fixed windows on the state store's own single Redis (not a Cluster,
    where the counters would sit in other slots than the code's key), so request-otp
    and verify-otp count them inside the script that does their work.
    """

    strategy: RateLimiter | None
    foldable: bool = False


def storage_uri(config: Mapping[str, Any]) -> str:
    """OTP_RATE_LIMIT_STORAGE_URI, else the state store's URL in the form `limits` reads."""
    uri = str(config.get("OTP_RATE_LIMIT_STORAGE_URI") or config["OTP_REDIS_URL"])
    if config.get("OTP_REDIS_CLUSTER") and uri.startswith("redis://"):
        # A plain URL marked as a cluster node: `limits` needs its cluster scheme.
        uri = "redis+cluster://" + uri.removeprefix("redis://").split("/", 1)[0]
    return uri


def build_rate_limits(config: Mapping[str, Any]) -> RateLimits:
    if not config["OTP_RATE_LIMIT_ENABLED"]:
        return RateLimits(strategy=None)
    name = str(config["OTP_RATE_LIMIT_STRATEGY"])
    if name not in STRATEGIES:
        raise ValueError(
            f"OTP_RATE_LIMIT_STRATEGY={name!r} is not one of {', '.join(sorted(STRATEGIES))}."
        )
    timeout = float(config["OTP_REDIS_SOCKET_TIMEOUT"])
    storage = storage_from_string(
        storage_uri(config), socket_timeout=timeout, socket_connect_timeout=timeout
    )
    foldable = (
        name == "fixed-window"
        and not config.get("OTP_RATE_LIMIT_STORAGE_URI")
        and not config.get("OTP_REDIS_CLUSTER")
        and not str(config["OTP_REDIS_URL"]).lower().startswith(("redis+cluster", "rediss+cluster"))
    )
    return RateLimits(strategy=STRATEGIES[name](storage), foldable=foldable)


# Per-IP fixed windows counted by the script that does the request's work, in the same
# round trip (see code_store). KEYS[2..] are the windows' counters; from ARGV[first]
# on, each window's amount and seconds. The semantics are `limits`' fixed window: the
# window starts at its first hit, and a refused request is not counted in later ones.
PER_IP_WINDOWS_LUA = """
local function over_per_ip_limit(first)
  for i = 2, #KEYS do
    local at = first + 2 * (i - 2)
    local hits = redis.call('INCR', KEYS[i])
    if hits == 1 then redis.call('EXPIRE', KEYS[i], tonumber(ARGV[at + 1])) end
    if hits > tonumber(ARGV[at]) then
      local left = redis.call('TTL', KEYS[i])
      if left < 1 then left = tonumber(ARGV[at + 1]) end
      return {'rate_limited', left, i - 1}
    end
  end
  return nil
end
"""


@dataclass(frozen=True)
class Windows:
    """The per-IP windows a store script is to count (none: counted already, or no limit)."""

    items: tuple[RateLimitItem, ...] = ()
    keys: tuple[str, ...] = ()
    args: tuple[int, ...] = ()

    def refusal(self, window: int, retry_after: int) -> RateLimited:
        """The error for the `window`-th window (1-based), as the decorator's."""
        return RateLimited(
            headers={"Retry-After": str(max(1, retry_after))},
            details={"limit": describe(self.items[window - 1])},
        )


NO_WINDOWS = Windows()


def per_ip_windows(setting: str, *, on_refusal: Callable[[], None] | None = None) -> Windows:
    """The windows of `setting` for the store script to count in its own round trip.

    Where they cannot be folded (a Cluster, another storage or strategy, the
    development magic code that skips the store), they are counted here and now,
    and the store gets none.
    """
    limits = current_state().rate_limits
    if limits.strategy is None:
        return NO_WINDOWS
    if not limits.foldable or settings.dev_magic_code:
        try:
            enforce(setting)
        except RateLimited:
            if on_refusal is not None:
                on_refusal()
            raise
        return NO_WINDOWS
    items, scope, client = _parsed(settings.rate_limit(setting)), request.endpoint, client_address()
    return Windows(
        items=items,
        keys=tuple(f"rl:{scope}:{client}:{item.amount}/{item.get_expiry()}" for item in items),
        args=tuple(value for item in items for value in (item.amount, item.get_expiry())),
    )


@functools.lru_cache(maxsize=64)
def _parsed(limits: str) -> tuple[RateLimitItem, ...]:
    """Every window of a setting: "20 per 10 minutes; 100 per day" is two."""
    return tuple(parse_many(limits))


# A window of one unit is said without its number: "per minute", not "per 1 minute".
_ONE_UNIT = {
    "second": _("second"),
    "minute": _("minute"),
    "hour": _("hour"),
    "day": _("day"),
    "month": _("month"),
    "year": _("year"),
}


def _units(unit: str, count: int) -> str:
    """`count` units (count > 1), in the request's language."""
    if unit == "second":
        return ngettext("%(num)s second", "%(num)s seconds", count)
    if unit == "minute":
        return ngettext("%(num)s minute", "%(num)s minutes", count)
    if unit == "hour":
        return ngettext("%(num)s hour", "%(num)s hours", count)
    if unit == "day":
        return ngettext("%(num)s day", "%(num)s days", count)
    if unit == "month":
        return ngettext("%(num)s month", "%(num)s months", count)
    return ngettext("%(num)s year", "%(num)s years", count)


def describe(item: RateLimitItem) -> str:
    """A window as people say it, in the request's language: "20 requests per 10 minutes",
    "100 requests per day"."""
    unit = item.GRANULARITY.name
    period = str(_ONE_UNIT[unit]) if item.multiples == 1 else _units(unit, item.multiples)
    requests = ngettext("%(num)s request", "%(num)s requests", item.amount)
    return gettext("%(requests)s per %(period)s", requests=requests, period=period)


def client_address() -> str:
    """The rate-limit key: the client's IP; unknown ones share one bucket rather than escape."""
    return request.remote_addr or "unknown"


def enforce(setting: str) -> None:
    """Count this request against each window of the limit named by `setting`.

    Raises RateLimited at the first window it is past (each window is one Redis
    round trip; the refused request is not counted in the windows after it).
    """
    strategy = current_state().rate_limits.strategy
    if strategy is None:
        return
    scope, client = request.endpoint or setting, client_address()
    # Waits out a failover or restart like the state store (a retried hit may count twice).
    patience = settings.redis_retry_seconds
    for item in _parsed(settings.rate_limit(setting)):
        if patiently(patience, strategy.hit, item, scope, client):
            continue
        reset_at = strategy.get_window_stats(item, scope, client).reset_time
        raise RateLimited(
            headers={"Retry-After": str(max(1, math.ceil(reset_at - time.time())))},
            details={"limit": describe(item)},
        )


def rate_limited(setting: str, *, on_refusal: Callable[[], None] | None = None) -> Callable[[F], F]:
    """Limit a view per client IP by the config value `setting`, before the view runs."""

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                enforce(setting)
            except RateLimited:
                if on_refusal is not None:
                    on_refusal()
                raise
            return view(*args, **kwargs)

        return cast(F, wrapper)

    return decorator
