"""REDIS_URL forms: one server, a Redis Cluster, a Sentinel; the broker stays apart."""

from __future__ import annotations

import pytest
import redis
from redis.sentinel import SentinelConnectionPool

from app import create_app
from flask_email_signin.redis_client import (
    LeanRedis,
    RedisTopology,
    RedisURLError,
    parse_topology,
    redis_from_url,
)
from support import make_config


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis+cluster://10.0.0.1:7000,10.0.0.2:7001",
         RedisTopology("cluster", [("10.0.0.1", 7000), ("10.0.0.2", 7001)])),
        ("redis+cluster://node-a", RedisTopology("cluster", [("node-a", 6379)])),
        ("rediss+cluster://user:p%40ss@[::1]:7000/0",
         RedisTopology("cluster", [("::1", 7000)], True, "user", "p@ss")),
        ("redis+sentinel://s1:26379,s2:26380/mymaster",
         RedisTopology("sentinel", [("s1", 26379), ("s2", 26380)], service_name="mymaster")),
        ("redis+sentinel://:secret@s1/mymaster/3",
         RedisTopology("sentinel", [("s1", 26379)], False, None, "secret", "mymaster", 3)),
    ],
)
def test_cluster_and_sentinel_urls_are_parsed(url: str, expected: RedisTopology) -> None:
    assert parse_topology(url) == expected


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("redis+cluster://a:7000/2", "only database 0"),
        ("redis+cluster://a:notaport", "not a number"),
        ("redis+cluster://", "names no host"),
        ("redis+sentinel://s1:26379", "service name"),
        ("redis+sentinel://s1:26379/svc/x", "not a number"),
        ("redis+sentinel://s1:26379/svc/1/extra", "service name"),
    ],
)
def test_unusable_urls_are_refused_with_the_reason(url: str, reason: str) -> None:
    with pytest.raises(RedisURLError, match=reason):
        redis_from_url(url)


def test_each_form_gets_redis_pys_own_client_with_bounded_timeouts() -> None:
    # Building a client opens no connection, so nothing needs to listen on these ports.
    single = redis_from_url("redis://127.0.0.1:1/2", timeout=0.5)
    assert type(single) is LeanRedis
    assert single.connection_pool.connection_kwargs["socket_timeout"] == 0.5
    assert single.connection_pool.connection_kwargs["socket_connect_timeout"] == 0.5

    sentinel = redis_from_url("redis+sentinel://127.0.0.1:1,127.0.0.1:2/svc/4", timeout=0.5)
    assert isinstance(sentinel.connection_pool, SentinelConnectionPool)
    assert sentinel.connection_pool.service_name == "svc"
    assert sentinel.connection_pool.connection_kwargs["db"] == 4
    assert sentinel.connection_pool.connection_kwargs["socket_timeout"] == 0.5
    assert [s.connection_pool.connection_kwargs["socket_timeout"]
            for s in sentinel.connection_pool.sentinel_manager.sentinels] == [0.5, 0.5]


def test_a_cluster_that_does_not_answer_is_a_redis_connection_error() -> None:
    # Discovery happens on first use, so the app can start while the cluster is down.
    client = redis_from_url("redis+cluster://127.0.0.1:1", timeout=0.2)
    with pytest.raises(redis.ConnectionError):
        client.ping()


def test_redis_cluster_flag_makes_a_plain_url_a_cluster_node(redis_url: str) -> None:
    # The suite's server is no cluster: redis-py's cluster client says so, it is not ignored.
    with pytest.raises(redis.ConnectionError, match=r"(?i)cluster"):
        redis_from_url(f"{redis_url}/0", cluster=True).ping()
    assert type(redis_from_url(f"{redis_url}/0")) is LeanRedis


def test_the_app_starts_while_the_cluster_is_down_and_answers_503(
    suite_config: type, database_url: str
) -> None:
    config = make_config(
        "redis://127.0.0.1:1", database_url, 1025,
        OTP_REDIS_URL="redis+cluster://127.0.0.1:1",
        OTP_CELERY_BROKER_URL=suite_config.OTP_CELERY_BROKER_URL,  # type: ignore[attr-defined]
        OTP_REDIS_SOCKET_TIMEOUT=0.2,
        OTP_RATE_LIMIT_ENABLED=False,
    )
    client = create_app(config).test_client()
    response = client.post("/auth/request-otp", json={"email": "down@example.com"})
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "service_unavailable"


@pytest.mark.parametrize(
    "overrides",
    [
        # The default broker is REDIS_URL: refused when that is a cluster or Sentinel.
        {"OTP_REDIS_URL": "redis+cluster://127.0.0.1:1",
         "OTP_CELERY_BROKER_URL": "redis+cluster://127.0.0.1:1"},
        {"OTP_REDIS_URL": "redis+sentinel://127.0.0.1:1/svc",
         "OTP_CELERY_BROKER_URL": "redis+sentinel://127.0.0.1:1/svc"},
        {"OTP_REDIS_CLUSTER": True, "OTP_REDIS_URL": "redis://127.0.0.1:1/0",
         "OTP_CELERY_BROKER_URL": "redis://127.0.0.1:1/0"},
    ],
)
def test_the_broker_must_be_configured_apart_from_a_cluster_or_sentinel(
    database_url: str, overrides: dict[str, object]
) -> None:
    config = make_config(
        "redis://127.0.0.1:1", database_url, 1025, OTP_RATE_LIMIT_ENABLED=False, **overrides
    )
    with pytest.raises(RedisURLError, match="OTP_CELERY_BROKER_URL"):
        create_app(config)
