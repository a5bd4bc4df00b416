"""The state store's Redis client, built from `OTP_REDIS_URL`: one server, a Cluster or Sentinel.

URL forms (the same ones the `limits` library understands):

- `redis://[user:pass@]host:port/db` (`rediss://` for TLS, `unix://` for a socket): one
  server, or with `OTP_REDIS_CLUSTER` on any node of a Redis Cluster.
- `redis+cluster://[user:pass@]host:port[,host:port...]`: a Redis Cluster, found through
  these startup nodes (`rediss+cluster://` for TLS). A cluster has only database 0.
- `redis+sentinel://[user:pass@]host:port[,host:port...]/service_name[/db]`: the master
  that these Sentinels currently name for `service_name` (`rediss+sentinel://` for TLS to
  the data nodes). Credentials are those of the Redis servers, not of the Sentinels.

Every client gets the same short socket and connect timeouts, and retries a command that
failed on a connection error or timeout with backoff for up to OTP_REDIS_RETRY_SECONDS:
a Sentinel failover (the client asks the Sentinels for the new master on reconnect), a
cluster node restart or a server restart then costs latency, not errors; a longer outage
is a 503. Retrying is blind (redis-py cannot tell whether a lost reply's command ran), so
every script that changes state either does the same thing twice or recognises its own
retry: a code carries a fresh random digest, a use of a code or link records its call's
nonce, a refresh rotation its new jti (see code_store and session_store).

Every key the product uses carries a hash tag, so each script and transaction touches one
slot and runs unchanged on a cluster.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import redis
from redis.backoff import EqualJitterBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.commands.core import Script
from redis.exceptions import ClusterDownError, NoScriptError, RedisClusterException
from redis.retry import Retry
from redis.sentinel import (
    Sentinel,
    SentinelConnectionPool,
    SentinelManagedConnection,
    SentinelManagedSSLConnection,
)

from .per_thread import PerThread

T = TypeVar("T")
CLUSTER_SCHEMES = {"redis+cluster": False, "rediss+cluster": True}
SENTINEL_SCHEMES = {"redis+sentinel": False, "rediss+sentinel": True}
DEFAULT_PORT = 6379
DEFAULT_SENTINEL_PORT = 26379


# Shared by the stores' scripts: extend a key's TTL to at least `secs`, never shorten it.
KEEP_TTL_LUA = """
local function keep(key, secs)
  if redis.call('TTL', key) < secs then redis.call('EXPIRE', key, secs) end
end
"""


class LuaScript(Script):
    """A script run by EVALSHA on whichever client is passed (loaded on first miss);
    on a `LeanRedis`, through its lean path."""

    def __call__(self, keys: Any = None, args: Any = None, client: Any = None) -> Any:
        run = getattr(client, "run_script", None)
        if run is not None:
            return run(self, keys or [], args or [])
        return super().__call__(keys or [], args or [], client)


def lua_script(text: str) -> LuaScript:
    # No bound client: every call passes the current app's client.
    return LuaScript(None, text.encode())  # type: ignore[arg-type]


class RedisURLError(ValueError):
    """OTP_REDIS_URL (or a URL derived from it) cannot be used; the message says why."""


@dataclass(frozen=True)
class RedisTopology:
    """What a multi-host URL names: its kind, hosts, credentials, service and database."""

    kind: str  # "cluster" or "sentinel"
    hosts: list[tuple[str, int]]
    tls: bool = False
    username: str | None = None
    password: str | None = None
    service_name: str | None = None
    db: int = 0


def is_multi_host_url(url: str) -> bool:
    """True for the cluster and Sentinel forms, which only redis-py's own clients speak."""
    scheme = url.split("://", 1)[0].lower()
    return scheme in CLUSTER_SCHEMES or scheme in SENTINEL_SCHEMES


def _split_host(text: str, default_port: int) -> tuple[str, int]:
    if text.startswith("["):  # [IPv6]:port
        host, _, rest = text[1:].partition("]")
        port = rest.lstrip(":")
    else:
        host, _, port = text.rpartition(":") if ":" in text else (text, "", "")
    if not host:
        raise RedisURLError(f"OTP_REDIS_URL host {text!r} is empty.")
    try:
        return host, int(port) if port else default_port
    except ValueError:
        raise RedisURLError(f"OTP_REDIS_URL port in {text!r} is not a number.") from None


def parse_topology(url: str) -> RedisTopology:
    """Parse a `redis+cluster://` or `redis+sentinel://` URL (see the module docstring)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in CLUSTER_SCHEMES and scheme not in SENTINEL_SCHEMES:
        raise RedisURLError(
            f"OTP_REDIS_URL scheme {scheme!r} is not a cluster or Sentinel scheme."
        )
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    username = password = None
    if userinfo:
        user, _, secret = userinfo.partition(":")
        username, password = unquote(user) or None, unquote(secret) or None
    is_cluster = scheme in CLUSTER_SCHEMES
    default_port = DEFAULT_PORT if is_cluster else DEFAULT_SENTINEL_PORT
    hosts = [_split_host(h, default_port) for h in hostlist.split(",") if h]
    if not hosts:
        raise RedisURLError("OTP_REDIS_URL names no host.")
    path = [p for p in parts.path.split("/") if p]
    if is_cluster:
        if path and path != ["0"]:
            raise RedisURLError(
                "A Redis Cluster has only database 0: drop the /db from OTP_REDIS_URL."
            )
        return RedisTopology("cluster", hosts, CLUSTER_SCHEMES[scheme], username, password)
    if not path or len(path) > 2:
        raise RedisURLError(
            "A Sentinel OTP_REDIS_URL needs the service name: "
            "redis+sentinel://host:26379[,host:26379]/service_name[/db]."
        )
    try:
        db = int(path[1]) if len(path) == 2 else 0
    except ValueError:
        raise RedisURLError(f"OTP_REDIS_URL database {path[1]!r} is not a number.") from None
    return RedisTopology(
        "sentinel", hosts, SENTINEL_SCHEMES[scheme], username, password, unquote(path[0]), db
    )


class PatientRedisCluster(RedisCluster):
    """A cluster client that waits out a node's absence (a restart, a failover) for
    `retry_seconds`, with backoff: redis-py retries a refused node at once and gives up
    within milliseconds. MOVED and ASK redirections are redis-py's own business."""

    retry_seconds: float = 0.0

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        return patiently(self.retry_seconds, super().execute_command, *args, **kwargs)


RETRYABLE = (redis.ConnectionError, redis.TimeoutError, ClusterDownError)


def patiently(seconds: float, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`call(*args, **kwargs)`, again with backoff while it fails on an absent server, for
    up to `seconds` (clients this module does not build, such as the rate limiter's)."""
    deadline = time.monotonic() + seconds
    delay = RETRY_BASE_SECONDS
    while True:
        try:
            return call(*args, **kwargs)
        except RETRYABLE:
            if time.monotonic() + delay >= deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, RETRY_CAP_SECONDS)


class LazyRedisCluster:
    """A RedisCluster built on first use, then used for every call.

    redis-py's cluster client connects to its startup nodes in its constructor. Built
    lazily, the app starts while the cluster is unreachable and answers 503 until it is
    back, as it does with one server; a failed discovery is a redis ConnectionError.
    """

    def __init__(self, retry_seconds: float = 0.0, **cluster_kwargs: Any) -> None:
        self._retry_seconds = retry_seconds
        self._kwargs = cluster_kwargs
        self._client: RedisCluster | None = None
        self._lock = threading.Lock()

    def get(self) -> RedisCluster:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    try:
                        client = PatientRedisCluster(**self._kwargs)
                    except RedisClusterException as error:
                        raise redis.ConnectionError(str(error)) from error
                    client.retry_seconds = self._retry_seconds
                    self._client = client
        return self._client

    def __getattr__(self, name: str) -> Any:
        return getattr(self.get(), name)


RETRY_BASE_SECONDS = 0.05
RETRY_CAP_SECONDS = 0.5


class RetryWithin(Retry):
    """Backoff retries (50 ms doubling to 500 ms, with jitter) for `seconds` of wall time.

    The count covers `seconds` of backoff alone (what a Redis Cluster client uses); the
    deadline also stops attempts that each wait for a socket timeout.
    """

    def __init__(self, seconds: float) -> None:
        retries, waited = 0, 0.0
        while waited < seconds:
            # EqualJitterBackoff waits at least half of min(cap, base * 2**n).
            waited += min(RETRY_CAP_SECONDS, RETRY_BASE_SECONDS * 2**retries) / 2
            retries += 1
        super().__init__(EqualJitterBackoff(cap=RETRY_CAP_SECONDS, base=RETRY_BASE_SECONDS),
                         retries)
        self.seconds = seconds

    def call_with_retry(
        self, do: Any, fail: Any, is_retryable: Any = None, with_failure_count: bool = False
    ) -> Any:
        deadline = time.monotonic() + self.seconds

        def fail_then_stop_at_deadline(error: Exception, *count: int) -> None:
            fail(error, *count)  # the client drops the broken connection here
            if time.monotonic() >= deadline:
                raise error

        return super().call_with_retry(
            do, fail_then_stop_at_deadline, is_retryable, with_failure_count
        )


class RetriedConnect:
    """A pool mixin: connecting is retried like commands (redis-py connects a new pooled
    connection before its retry starts; during a failover that would fail at once).
    Nothing has been sent yet, so this retry is always safe."""

    connection_kwargs: dict[str, Any]

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        retry = self.connection_kwargs.get("retry")
        connect = super().get_connection  # type: ignore[misc]
        if not isinstance(retry, RetryWithin) or retry.seconds <= 0:
            return connect(*args, **kwargs)
        return retry.call_with_retry(lambda: connect(*args, **kwargs), lambda *_: None)


class SentinelConnection(SentinelManagedConnection):
    """Reconnects through the Sentinels. redis-py's send path reconnects a dropped
    connection to its last address, so a command retried across a failover would knock
    at the dead master until its retries ran out; this asks the Sentinels again."""

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if not self._sock:
            self.connect()
        super().send_packed_command(command, check_health)


class SentinelSSLConnection(SentinelConnection, SentinelManagedSSLConnection):
    pass


class RetriedConnectPool(RetriedConnect, redis.ConnectionPool):
    pass


class RetriedConnectSentinelPool(RetriedConnect, SentinelConnectionPool):
    pass


class LeanRedis(redis.Redis):
    """A client of one server whose hot commands skip redis-py's per-command machinery.

    Every request of the product runs one or two scripts, and request-otp one LPUSH.
    Through `execute_command` each costs some 170 Python calls (pool checkout with a
    readiness poll, retry wrapper, connection metrics) around the one send and read;
    `lean_call` sends it on a connection of the thread's own with redis-py's `Connection`
    API. A failure hands the call to the full client, which loads a missing script and
    retries as configured (the state scripts all recognise their own retry, see the
    module docstring); with retrying off, a failure is raised, never run twice.
    `lean=False` (tracing on) keeps every command on the instrumented path.
    """

    def __init__(self, *args: Any, lean: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lean = lean
        pool = self.connection_pool
        # Closed when its thread ends (see per_thread); a forked child opens its own.
        self._own = PerThread(lambda _key: pool.connection_class(**pool.connection_kwargs),
                              lambda connection: connection.disconnect())

    def _own_connection(self) -> Any:
        return self._own.get()

    @property
    def retries(self) -> bool:
        retry = self.connection_pool.connection_kwargs.get("retry")
        return isinstance(retry, Retry) and retry.get_retries() > 0

    def lean_call(self, command: tuple[Any, ...], full: Callable[[], T]) -> T | Any:
        """`command`'s reply, sent on the thread's own connection; `full()` after a failure."""
        if self.lean:
            connection = self._own_connection()
            try:
                if connection._sock is not None:
                    # As the pool checks a connection it hands out: one idle across a
                    # server restart reads as closed; reconnect rather than fail.
                    try:
                        stale = connection.can_read()
                    except (redis.ConnectionError, OSError):
                        stale = True
                    if stale:
                        connection.disconnect()
                connection.send_command(*command)
                return connection.read_response()
            except NoScriptError:
                pass  # the full path loads it
            except (redis.ConnectionError, redis.TimeoutError):
                connection.disconnect()
                if not self.retries:
                    raise  # retrying is off: a lost reply is not run a second time
        return full()

    def run_script(self, script: Script, keys: list[Any], args: list[Any]) -> Any:
        return self.lean_call(
            ("EVALSHA", script.sha, len(keys), *keys, *args),
            lambda: Script.__call__(script, keys, args, self),
        )

    def close(self) -> None:
        self._own.release_all()
        super().close()


def redis_from_url(
    url: str, *, cluster: bool = False, timeout: float = 1.0, retry_seconds: float = 0.0,
    lean: bool = True,
) -> Any:
    """A redis-py client for `url`: Redis, RedisCluster, or a Sentinel-managed master.

    `cluster=True` (OTP_REDIS_CLUSTER) treats a plain `redis://` URL as one node of a cluster.
    `retry_seconds` (OTP_REDIS_RETRY_SECONDS): how long a failing command is retried.
    `lean=False`: one server's scripts go through redis-py's instrumented path too.
    """
    bounded: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "health_check_interval": 30,
        "retry": RetryWithin(retry_seconds),
    }
    if not is_multi_host_url(url):
        if cluster:
            return LazyRedisCluster(retry_seconds, url=url, **bounded)
        return LeanRedis(connection_pool=RetriedConnectPool.from_url(url, **bounded), lean=lean)

    topology = parse_topology(url)
    credentials: dict[str, Any] = {"username": topology.username, "password": topology.password}
    if topology.kind == "cluster":
        return LazyRedisCluster(
            retry_seconds,
            startup_nodes=[ClusterNode(host, port) for host, port in topology.hosts],
            ssl=topology.tls,
            **credentials,
            **bounded,
        )
    sentinel = Sentinel(
        topology.hosts,
        sentinel_kwargs={"socket_timeout": timeout, "socket_connect_timeout": timeout},
        **bounded,
    )
    assert topology.service_name is not None
    credentials["connection_class"] = SentinelSSLConnection if topology.tls else SentinelConnection
    return sentinel.master_for(
        topology.service_name, db=topology.db,
        connection_pool_class=RetriedConnectSentinelPool, **credentials,
    )
