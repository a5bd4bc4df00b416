"""The whole sign-in flow on a real 3-master Redis Cluster (REDIS_URL=redis+cluster://...).

Every script and transaction of the product names keys that share one hash tag, so
each runs inside one slot; these tests prove it against a cluster that refuses
anything else (CROSSSLOT), with the keys spread over the masters.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
import redis
from flask import Flask
from live_stack import (
    app_with_worker,
    auth_actions,
    client_from,
    private_redis,
    release_app,
    wait_until,
)
from traffic import ProtectedReads, SignInLoad

from app import create_app
from app.devtools.inbox import Inbox
from app.devtools.redis_cluster import LocalCluster, start_cluster
from flask_email_signin.code_store import code_key, mail_sent_key
from flask_email_signin.session_store import session_index_key, session_key
from flask_email_signin.state import redis_client
from support import error_code, make_config, new_email

# Starts processes of its own (servers, workers or a browser): `pytest -m "not live"` skips it.
pytestmark = pytest.mark.live

# Keys written by libraries, not by the product (each is one key per command).
LIBRARY_KEY_PREFIXES = (b"LIMITS:", b"LIMITER")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """Three masters on loopback ports, slots split by `valkey-cli --cluster create`."""
    cluster = start_cluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def cluster_app(
    cluster: LocalCluster, app: Flask, database_url: str, inbox: Inbox,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Flask]:
    """The app on the cluster, its broker on a private Redis, and a worker of its own."""
    with private_redis(tmp_path_factory.mktemp("cluster-broker")) as broker:
        config = make_config(
            broker, database_url, inbox.port,  # type: ignore[attr-defined]
            OTP_REDIS_URL=cluster.url, OTP_CELERY_BROKER_URL=f"{broker}/0",
            # A restarted master answers CLUSTERDOWN until its rejoin delay has passed
            # (cluster-node-timeout, 2 s here, clamped to 0.5-5 s) and gossip has caught
            # up: about 5 s on this machine, 6.5 s seen. The budget must exceed it.
            OTP_REDIS_RETRY_SECONDS=15,
        )
        with app_with_worker(config, tmp_path_factory.mktemp("cluster-worker"),
                             REDIS_RETRY_SECONDS="15") as cluster_app:
            yield cluster_app


def keys_by_node(cluster: LocalCluster) -> dict[int, list[bytes]]:
    found = {}
    for port in cluster.ports:
        with redis.Redis(port=port) as node:
            found[port] = list(node.scan_iter(count=1000))
    return found


def test_every_key_of_one_email_or_user_maps_to_one_slot(cluster: LocalCluster) -> None:
    tag = "Zm9vYmFy"  # an email tag's shape (flask_email_signin.codes.email_tag)
    email_keys = (code_key(tag), mail_sent_key(tag, "task-1"), mail_sent_key(tag, "task-2"))
    user_keys = (session_key("42", "sid-a"), session_key("42", "sid-b"), session_index_key("42"))
    with redis.Redis(port=cluster.ports[0]) as node:
        for keys in (email_keys, user_keys):
            assert len({node.cluster("KEYSLOT", key) for key in keys}) == 1


def test_sign_in_refresh_and_sessions_run_on_the_cluster(
    cluster_app: Flask, inbox: Inbox, cluster: LocalCluster
) -> None:
    for n in range(6):
        auth = auth_actions(cluster_app, inbox, f"127.0.2.{n + 1}")
        email = new_email("cluster")
        auth.sign_in(email)
        assert auth.client.get("/auth/me").get_json()["email"] == email
        refreshed = auth.client.post("/auth/refresh", headers=auth.csrf_header("refresh"))
        assert refreshed.status_code == 200, refreshed.get_json()
        sessions = auth.client.get("/auth/sessions")
        assert sessions.status_code == 200 and len(sessions.get_json()["sessions"]) == 1

    stored = keys_by_node(cluster)
    assert sum(1 for keys in stored.values() if keys) >= 2, "keys should spread over masters"
    product_keys = [
        key for keys in stored.values() for key in keys
        if not key.startswith(LIBRARY_KEY_PREFIXES)
    ]
    assert product_keys
    untagged = [key for key in product_keys if b"{" not in key or b"}" not in key]
    assert untagged == [], "every product key needs a hash tag to stay in one slot"


def test_concurrent_right_answers_sign_in_exactly_once(
    cluster_app: Flask, inbox: Inbox
) -> None:
    auth = auth_actions(cluster_app, inbox, "127.0.2.20")
    email = new_email("race")
    assert auth.request_code(email).status_code == 202
    code = auth.read_code_from_inbox(email)

    contenders = 8
    start = threading.Barrier(contenders)
    statuses: list[tuple[int, str | None]] = []
    lock = threading.Lock()

    def verify(index: int) -> None:
        client = client_from(cluster_app, f"127.0.3.{index + 1}")
        start.wait(timeout=10)
        response = client.post("/auth/verify-otp", json={"email": email, "otp": code})
        outcome = (response.status_code,
                   None if response.status_code == 200 else error_code(response))
        with lock:
            statuses.append(outcome)

    threads = [threading.Thread(target=verify, args=(i,)) for i in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(statuses) == contenders
    assert statuses.count((200, None)) == 1
    assert statuses.count((401, "otp_used")) == contenders - 1


def test_logout_and_logout_all_revoke_at_once_on_the_cluster(
    cluster_app: Flask, inbox: Inbox
) -> None:
    email = new_email("revoke")
    laptop = auth_actions(cluster_app, inbox, "127.0.2.30")
    phone = auth_actions(cluster_app, inbox, "127.0.2.31")
    tablet = auth_actions(cluster_app, inbox, "127.0.2.32")
    cluster_app.config["OTP_RESEND_COOLDOWN_SECONDS"] = 0
    try:
        laptop_signed_in = laptop.sign_in(email)
        tokens = {}
        for device, count in ((phone, 2), (tablet, 3)):
            device.request_code(email)
            signed_in = device.verify(email, device.read_code_from_inbox(email, count=count))
            assert signed_in.status_code == 200
            tokens[device] = signed_in.get_json()["access_token"]
    finally:
        cluster_app.config["OTP_RESEND_COOLDOWN_SECONDS"] = 60

    laptop_token = laptop_signed_in.get_json()["access_token"]
    assert laptop.client.post("/auth/logout", headers=laptop.csrf_header()).status_code == 200
    gone = laptop.client.get("/auth/me", headers={"Authorization": f"Bearer {laptop_token}"})
    assert gone.status_code == 401 and error_code(gone) == "token_revoked"
    assert phone.client.get("/auth/me").status_code == 200

    ended = phone.client.post("/auth/logout-all", headers=phone.csrf_header())
    assert ended.status_code == 200
    for device in (phone, tablet):
        bearer = {"Authorization": f"Bearer {tokens[device]}"}
        refused = device.client.get("/auth/me", headers=bearer)
        assert refused.status_code == 401 and error_code(refused) == "token_revoked"
    # The tablet still holds its refresh cookie: the session behind it is gone too.
    refresh = tablet.client.post("/auth/refresh", headers=tablet.csrf_header("refresh"))
    assert refresh.status_code == 401 and error_code(refresh) == "token_revoked"


def test_wrong_answers_lock_the_email_on_the_cluster(cluster_app: Flask, inbox: Inbox) -> None:
    auth = auth_actions(cluster_app, inbox, "127.0.2.40")
    email = new_email("lock")
    auth.request_code(email)
    code = auth.read_code_from_inbox(email)
    wrong = f"{(int(code) + 1) % 10 ** len(code):0{len(code)}d}"
    for left in range(cluster_app.config["OTP_MAX_ATTEMPTS"] - 1, 0, -1):
        response = auth.verify(email, wrong)
        assert response.get_json()["error"]["details"]["attempts_left"] == left
    assert error_code(auth.verify(email, wrong)) == "otp_attempts_exceeded"
    assert error_code(auth.verify(email, code)) == "otp_attempts_exceeded"


def test_the_cluster_client_is_redis_pys_own(cluster_app: Flask) -> None:
    with cluster_app.app_context():
        client = redis_client()
        assert isinstance(client.get(), redis.cluster.RedisCluster)  # type: ignore[attr-defined]
        assert len(client.get_primaries()) == 3



def test_redis_cluster_flag_with_a_plain_node_url_signs_in(
    cluster_app: Flask, cluster: LocalCluster, inbox: Inbox
) -> None:
    # REDIS_CLUSTER=1 and one node's redis:// address: the same cluster, found from that node.
    config = make_config(
        "redis://unused", cluster_app.config["SQLALCHEMY_DATABASE_URI"],
        inbox.port,  # type: ignore[attr-defined]
        OTP_REDIS_URL=f"redis://127.0.0.1:{cluster.ports[1]}", OTP_REDIS_CLUSTER=True,
        OTP_CELERY_BROKER_URL=cluster_app.config["OTP_CELERY_BROKER_URL"],
    )
    flagged = create_app(config)
    try:
        auth = auth_actions(flagged, inbox, "127.0.2.50")
        email = new_email("flag")
        auth.sign_in(email)
        assert auth.client.get("/auth/me").get_json()["email"] == email
        with flagged.app_context():
            assert len(redis_client().get_primaries()) == 3
    finally:
        release_app(flagged)


def serves_again(port: int) -> bool:
    """The node says the cluster is whole again (a restarted master refuses until then)."""
    try:
        with redis.Redis(port=port, socket_timeout=1, decode_responses=True) as node:
            return bool(node.cluster("INFO").get("cluster_state") == "ok")
    except redis.RedisError:
        return False


def test_resharding_and_a_node_restart_cost_latency_not_errors(
    cluster_app: Flask, cluster: LocalCluster, inbox: Inbox,
    report_measurement: Callable[[str, object], None],
) -> None:
    """Under steady sign-ins and reads: 3000 slots move to another master (ASK, then MOVED
    answers), then a master restarts (its slots unreachable meanwhile). Nothing fails."""
    load = SignInLoad(cluster_app, inbox)
    runner = threading.Thread(target=load.run)
    runner.start()
    reads: ProtectedReads | None = None
    reader: threading.Thread | None = None
    try:
        wait_until(lambda: len(load.accepted) >= 3, 20, "sign-ins before the events")
        reads = ProtectedReads(cluster_app, load.accepted[0][1])
        reader = threading.Thread(target=reads.run)
        reader.start()
        wait_until(lambda: len(reads.calls) >= 10, 10, "protected reads before the events")
        resharding = time.monotonic()
        cluster.reshard(3000, source=cluster.ports[0], target=cluster.ports[1])
        resharded = time.monotonic()
        accepted_before_restart = len(load.accepted)
        # The node that holds the token's session, so the reads must wait for it.
        with cluster_app.app_context():
            node = redis_client().get_node_from_key(session_index_key(
                str(client_from(cluster_app, "127.0.2.99").get(
                    "/auth/me", headers={"Authorization": f"Bearer {reads.token}"}
                ).get_json()["id"])
            ))
        restarted_at = time.monotonic()
        down = cluster.restart(int(node.port))
        wait_until(lambda: serves_again(int(node.port)), 30, "the restarted master to serve")
        serving_at = time.monotonic()
        wait_until(lambda: len(load.accepted) >= accepted_before_restart + 3, 30,
                   "sign-ins after the restart")
    finally:
        load.stop.set()
        if reads is not None and reader is not None:
            reads.stop.set()
            reader.join(timeout=30)
        runner.join(timeout=30)

    assert not runner.is_alive()
    assert load.refusals == Counter(), load.refusals
    assert reads is not None
    assert [call for call in reads.calls if call[2] != 200] == []
    during_reshard = [s for at, s, _ in reads.calls if resharding <= at + s and at <= resharded]
    during_restart = [s for at, s, _ in reads.calls if restarted_at <= at + s
                      and at <= serving_at]
    assert during_reshard and during_restart, "reads ran during both events"
    report_measurement("failed requests (sign-ins, reads)",
                       f"0, 0 of {len(load.durations)}, {len(reads.calls)}")
    report_measurement("resharding 3000 slots", f"{resharded - resharding:.1f} s, slowest "
                       f"read {max(during_reshard):.3f} s")
    report_measurement("master restart", f"process down {down:.2f} s, serving again after "
                       f"{serving_at - restarted_at:.1f} s, slowest read "
                       f"{max(during_restart):.2f} s")
    with cluster_app.app_context():
        moved = redis_client().get_node_from_key("x")  # the client follows the new map
        assert moved is not None
