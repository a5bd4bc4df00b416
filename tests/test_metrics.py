"""/metrics: the counters of the sign-in flow and request latency, read as Prometheus would."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import urllib.request
import uuid
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from live_stack import WebNode, app_with_worker, auth_actions, node_environment, wait_until
from prometheus_client.parser import text_string_to_metric_families

from app.devtools.inbox import Inbox
from app.devtools.redis_server import free_port
from support import AuthActions, error_code, make_config, new_email, other_code

ROOT = Path(__file__).resolve().parent.parent


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse_samples(text: str) -> Samples:
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def read_metrics(client: FlaskClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain; version=")
    return parse_samples(response.get_data(as_text=True))


def value(samples: dict, name: str, **labels: str) -> float:
    return float(samples.get((name, tuple(sorted(labels.items()))), 0.0))


def wait_for_metric(client: FlaskClient, name: str, at_least: float, **labels: str) -> float:
    """The worker counts a send just after the server took it: wait for that, not a time."""
    done = threading.Event()
    for _ in range(200):
        current = value(read_metrics(client), name, **labels)
        if current >= at_least:
            return current
        done.wait(0.05)
    return value(read_metrics(client), name, **labels)


def test_the_sign_in_flow_is_counted(auth: AuthActions, email: str) -> None:
    before = read_metrics(auth.client)

    assert auth.request_code(email).status_code == 202
    code = auth.read_code_from_inbox(email)
    assert auth.request_code(email).status_code == 429  # inside the resend cooldown
    assert auth.verify(email, other_code(code)).status_code == 401
    assert auth.verify(email, code).status_code == 200
    assert error_code(auth.verify(email, code)) == "otp_used"  # used up
    assert auth.client.post("/auth/refresh", headers=auth.csrf_header("refresh")).status_code == 200
    assert auth.client.post("/auth/logout", headers=auth.csrf_header()).status_code == 200

    after = read_metrics(auth.client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("email_signin_codes_requested_total", result="issued") == 1
    assert delta("email_signin_codes_requested_total", result="cooldown") == 1
    assert delta("email_signin_verifications_total", outcome="wrong") == 1
    assert delta("email_signin_verifications_total", outcome="ok") == 1
    assert delta("email_signin_verifications_total", outcome="used") == 1
    assert delta("email_signin_tokens_refreshed_total") == 1
    assert delta("email_signin_tokens_revoked_total", reason="logout") == 1
    sent_before = value(before, "email_signin_emails_total", result="sent")
    sent = wait_for_metric(auth.client, "email_signin_emails_total", sent_before + 1, result="sent")
    assert sent >= sent_before + 1
    # Latency is observed per route pattern.
    labels = {"method": "POST", "endpoint": "/auth/verify-otp"}
    assert delta("email_signin_http_request_duration_seconds_count", **labels) == 3
    assert delta("email_signin_http_request_duration_seconds_sum", **labels) > 0
    assert delta("email_signin_http_requests_total", status="401", **labels) == 2


def test_exhausted_outcomes_are_counted(auth: AuthActions, email: str) -> None:
    before = read_metrics(auth.client)
    auth.request_code(email)
    code = auth.read_code_from_inbox(email)
    attempts = auth.app.config["OTP_MAX_ATTEMPTS"]
    for _ in range(attempts):
        auth.verify(email, other_code(code))
    assert error_code(auth.verify(email, code)) == "otp_attempts_exceeded"
    after = read_metrics(auth.client)
    exhausted = value(after, "email_signin_verifications_total", outcome="exhausted") - value(
        before, "email_signin_verifications_total", outcome="exhausted"
    )
    # The last wrong try exhausts the code too (it answers otp_attempts_exceeded).
    assert exhausted >= 1


def test_verifications_refused_by_the_rate_limiter_are_counted(
    auth: AuthActions, email: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(auth.app.config, "OTP_RATE_LIMIT_VERIFY", "1 per minute")
    auth.client.environ_base["REMOTE_ADDR"] = f"10.7.{uuid.uuid4().int % 250}.7"
    before = read_metrics(auth.client)
    assert auth.verify(email, "123456").status_code == 401
    limited = auth.verify(email, "123456")
    assert limited.status_code == 429 and error_code(limited) == "rate_limited"
    after = read_metrics(auth.client)
    assert value(after, "email_signin_verifications_total", outcome="rate_limited") - value(
        before, "email_signin_verifications_total", outcome="rate_limited"
    ) == 1


def test_reused_refresh_tokens_and_revoked_sessions_are_counted(
    auth: AuthActions, email: str
) -> None:
    auth.sign_in(email)
    stolen = auth.client.get_cookie("refresh_token", path="/auth").value
    csrf = auth.csrf_header("refresh")
    before = read_metrics(auth.client)
    auth.client.post("/auth/refresh", headers=csrf)
    auth.client.set_cookie("refresh_token", stolen, path="/auth")
    assert error_code(auth.client.post("/auth/refresh", headers=csrf)) == "refresh_token_reused"
    after = read_metrics(auth.client)
    assert value(after, "email_signin_tokens_revoked_total", reason="refresh_reused") - value(
        before, "email_signin_tokens_revoked_total", reason="refresh_reused"
    ) == 1


def test_unknown_paths_share_one_label(client: FlaskClient) -> None:
    """Paths under the prefix that match no route count under the catch-all's pattern."""
    client.get("/auth/no/such/path/1")
    client.get("/auth/no/such/path/2")
    samples = read_metrics(client)
    assert value(samples, "email_signin_http_requests_total", method="GET",
                 endpoint="/auth/<path:_unknown>", status="404") >= 2
    assert not any("/no/such" in str(labels) for _name, labels in samples)


MULTIPROCESS_SCRIPT = textwrap.dedent(
    """
    import sys
    from app import create_app
    from config import TestingConfig

    app = create_app(TestingConfig)
    client = app.test_client()
    for _ in range(int(sys.argv[1])):
        assert client.get("/auth/openapi.json").status_code == 200
    if sys.argv[2] == "print":
        sys.stdout.write(client.get("/metrics").get_data(as_text=True))
    """
)


@pytest.mark.live
def test_multiprocess_mode_adds_up_every_process(tmp_path: Path) -> None:
    """As under gunicorn: two processes share PROMETHEUS_MULTIPROC_DIR; /metrics sums both."""
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'unused.db'}",
    }

    def run(requests: int, mode: str) -> str:
        result = subprocess.run(
            [sys.executable, "-c", MULTIPROCESS_SCRIPT, str(requests), mode],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    run(3, "quiet")  # a first process, gone by the time the second one reports
    text = run(2, "print")
    counts = {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "email_signin_http_request_duration_seconds_count"
    }
    assert counts[(("endpoint", "/auth/openapi.json"), ("method", "GET"))] == 5


@pytest.mark.live
def test_a_prefork_worker_serves_its_own_email_counts(
    app: object, redis_url: str, database_url: str, inbox: Inbox, tmp_path: Path
) -> None:
    """A worker where no web process runs: OTP_WORKER_METRICS_PORT exposes its counts."""
    port, counts = free_port(), tmp_path / "prometheus"
    counts.mkdir()
    config = make_config(redis_url, database_url, inbox.port)  # type: ignore[attr-defined]
    worker_env = {"OTP_WORKER_METRICS_PORT": str(port), "PROMETHEUS_MULTIPROC_DIR": str(counts)}
    queue = f"metrics-{uuid.uuid4().hex[:12]}"
    with app_with_worker(config, tmp_path, queue=queue, pool="prefork", **worker_env) as host:
        auth = auth_actions(host, inbox, "127.0.11.1")
        email = new_email("worker-metrics")
        assert auth.request_code(email).status_code == 202
        auth.read_code_from_inbox(email)

        def scraped_sent() -> float:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    return value(parse_samples(r.read().decode()), "email_signin_emails_total",
                                 result="sent")
            except OSError:
                return -1.0  # not listening yet

        # The count lands just after the SMTP server took the message: wait for it.
        wait_until(lambda: scraped_sent() == 1.0, 15, "the worker's /metrics to count the email")


@pytest.mark.live
def test_make_run_serves_metrics_of_both_gunicorn_workers(
    app: object, redis_url: str, database_url: str, inbox: Inbox, tmp_path: Path
) -> None:
    """`make run` empties a multiprocess directory and starts the Procfile's web (two gunicorn
    workers) and worker in it; /metrics then counts the requests of both web workers."""
    recipe = subprocess.run(
        ["make", "-n", "run"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    metrics_dir = str(ROOT / "instance" / "metrics")
    assert "rm -rf instance/metrics && mkdir -p instance/metrics" in recipe
    assert f'PROMETHEUS_MULTIPROC_DIR="{metrics_dir}"' in recipe and "honcho start" in recipe
    procfile = dict(
        line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line
    )
    web = procfile["web"].split()
    assert web[0] == "gunicorn" and procfile["worker"].startswith("celery")
    workers = web[web.index("--workers") + 1]
    assert int(workers) == 2

    counts = tmp_path / "metrics"
    counts.mkdir()
    env = node_environment(
        redis_url=f"{redis_url}/0", broker_url=f"{redis_url}/1", database_url=database_url,
        mail_port=inbox.port,  # type: ignore[attr-defined]
        PROMETHEUS_MULTIPROC_DIR=str(counts),
    )
    node = WebNode(env, tmp_path, "make-run-web", "--workers", workers)
    try:
        node.wait_ready()
        requests = 40  # each on a new connection, so both workers take some
        for _ in range(requests):
            assert node.exchange("GET", "/auth/openapi.json").status == 200
        # Each worker writes its own file from import on (an unlabelled counter): both ran.
        # The arbiter writes an empty one too (gunicorn.conf.py loads the package's JSON log
        # handler), and so would a worker gunicorn replaces.
        assert len(list(counts.glob("counter_*.db"))) >= 2
        samples = parse_samples(node.exchange("GET", "/metrics").body.decode())
        assert value(samples, "email_signin_http_requests_total", method="GET",
                     endpoint="/auth/openapi.json", status="200") == requests
    finally:
        node.stop()
