"""Sign-ins through a Sentinel-managed Redis (REDIS_URL=redis+sentinel://...), across a failover.

A real master, replica and Sentinel run on loopback ports. The test kills the master
while sign-ins are under way: requests wait (the client retries, asking the Sentinel for
the master again, within OTP_REDIS_RETRY_SECONDS) until the Sentinel has promoted the
replica, so the failover costs latency and no request fails; every sign-in accepted,
before or after, still works.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
from flask import Flask
from live_stack import app_with_worker, auth_actions, client_from, private_redis, wait_until
from redis.sentinel import SentinelConnectionPool
from traffic import ProtectedReads, SignInLoad

from app.devtools.inbox import Inbox
from app.devtools.redis_sentinel import LocalSentinelSet, start_sentinel_set
from flask_email_signin.state import redis_client
from support import make_config, new_email

# Starts processes of its own (servers, workers or a browser): `pytest -m "not live"` skips it.
pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def sentinel_set(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSentinelSet]:
    """Master + replica + one Sentinel (down after 1 s, failover timeout 3 s)."""
    group = start_sentinel_set(tmp_path_factory.mktemp("sentinel"))
    try:
        yield group
    finally:
        group.stop()


@pytest.fixture(scope="module")
def sentinel_app(
    sentinel_set: LocalSentinelSet, app: Flask, database_url: str, inbox: Inbox,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Flask]:
    """The app on the Sentinel's master, its broker on a private Redis, its own worker."""
    with private_redis(tmp_path_factory.mktemp("sentinel-broker")) as broker:
        config = make_config(
            broker, database_url, inbox.port,  # type: ignore[attr-defined]
            OTP_REDIS_URL=sentinel_set.url, OTP_CELERY_BROKER_URL=f"{broker}/0",
            OTP_REDIS_SOCKET_TIMEOUT=0.5,
            # Longer than this Sentinel set's slowest failover: down after 1 s, then an
            # election, usually ~2 s in all, but a failed election waits 2 x 3 s for the next.
            # In production too, OTP_REDIS_RETRY_SECONDS must exceed the failover time.
            OTP_REDIS_RETRY_SECONDS=20,
        )
        logs = tmp_path_factory.mktemp("sentinel-worker")
        with app_with_worker(config, logs, REDIS_SOCKET_TIMEOUT="0.5",
                             REDIS_RETRY_SECONDS="20") as sentinel_app:
            yield sentinel_app


def test_the_client_follows_the_sentinels_master(
    sentinel_app: Flask, sentinel_set: LocalSentinelSet, inbox: Inbox
) -> None:
    with sentinel_app.app_context():
        pool = redis_client().connection_pool
        assert isinstance(pool, SentinelConnectionPool)
        assert pool.get_master_address() == ("127.0.0.1", sentinel_set.master_port)
    auth = auth_actions(sentinel_app, inbox, "127.0.5.1")
    auth.sign_in(new_email("sentinel"))
    assert auth.client.get("/auth/me").status_code == 200


def test_a_failover_costs_latency_not_errors_and_no_sign_in_is_lost(
    sentinel_app: Flask, sentinel_set: LocalSentinelSet, inbox: Inbox,
    report_measurement: Callable[[str, object], None],
) -> None:
    load = SignInLoad(sentinel_app, inbox)
    runner = threading.Thread(target=load.run)
    runner.start()
    reads: ProtectedReads | None = None
    reader: threading.Thread | None = None
    try:
        wait_until(lambda: len(load.accepted) >= 3, 20, "sign-ins before the failover")
        reads = ProtectedReads(sentinel_app, load.accepted[0][1])
        reader = threading.Thread(target=reads.run)
        reader.start()
        wait_until(lambda: len(reads.calls) >= 10, 10, "protected reads before the failover")
        sentinel_set.processes["master"].send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        wait_until(
            lambda: sentinel_set.current_master_port() == sentinel_set.replica_port,
            20, "the Sentinel to promote the replica",
        )
        promoted_at = time.monotonic()
        wait_until(
            lambda: sum(1 for *_, at in load.accepted if at > killed_at) >= 3,
            20, "sign-ins on the promoted replica",
        )
    finally:
        load.stop.set()
        if reads is not None and reader is not None:
            reads.stop.set()
            reader.join(timeout=30)
        runner.join(timeout=30)

    assert not runner.is_alive()
    # Not one request failed: those in flight waited for the promoted replica.
    assert load.refusals == Counter(), load.refusals
    assert reads is not None
    failed_reads = [call for call in reads.calls if call[2] != 200]
    assert failed_reads == []
    # Reads were under way while no master answered: the event was felt, as latency.
    in_the_gap = [seconds for at, seconds, _ in reads.calls
                  if at < promoted_at and at + seconds > killed_at]
    assert in_the_gap, "no read ran while the Sentinel had no master"
    before = [seconds for at, seconds, _ in reads.calls if at + seconds < killed_at]
    report_measurement("failed requests (sign-ins, reads)",
                       f"{sum(load.refusals.values())}, {len(failed_reads)} "
                       f"of {len(load.durations)}, {len(reads.calls)}")
    report_measurement("failover (kill to promotion)", f"{promoted_at - killed_at:.2f} s")
    report_measurement("slowest read in the gap / before",
                       f"{max(in_the_gap):.2f} s / {max(before):.3f} s")
    client = client_from(sentinel_app, "127.0.5.2")
    for email, token, _at in load.accepted:
        me = client.get("/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200, (email, me.get_json())
        assert me.get_json()["email"] == email
