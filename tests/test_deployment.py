"""Deployment files: the boot script really migrates then serves, and the image and
compose file hold the promises the README makes (non-root, one image for app and
worker, broker apart from the state store, graceful stop windows)."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from live_stack import ROOT, node_environment, spawn, stop, wait_until
from local_services import compose_command, compose_problem

from app.devtools.redis_server import free_port
from support import SUITE_JWT_SECRET_KEY, SUITE_SECRET_KEY

COMPOSE_SERVICES = {"app", "worker", "redis", "postgres", "mailpit", "proxy"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    with (ROOT / "docker-compose.yml").open() as file:
        return yaml.safe_load(file)


def test_compose_has_app_worker_redis_postgres_and_mailpit(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == COMPOSE_SERVICES
    app, worker = services["app"], services["worker"]
    assert app["image"] == worker["image"] and app["build"] == worker["build"] == "."
    assert worker["command"][:5] == ["celery", "--quiet", "-A", "worker", "worker"]
    assert "command" not in app  # the image's CMD: ./boot.sh
    assert any("8025" in port for port in services["mailpit"]["ports"])  # Mailpit's web UI
    for name in ("postgres", "redis"):
        assert app["depends_on"][name]["condition"] == "service_healthy"
        assert "healthcheck" in services[name]


def test_compose_serves_the_app_only_through_the_proxy(compose: dict[str, Any]) -> None:
    """The file the suite runs nginx with (ProxyNode) is the one compose mounts."""
    services = compose["services"]
    proxy, app = services["proxy"], services["app"]
    assert proxy["image"].startswith("nginx:")
    assert "./deploy/nginx.conf:/etc/nginx/conf.d/default.conf:ro" in proxy["volumes"]
    assert proxy["ports"] == ["8000:8000"] and "ports" not in app
    assert app["expose"] == ["8000"]
    assert proxy["depends_on"]["app"]["condition"] == "service_healthy"
    assert app["environment"]["TRUSTED_PROXY_COUNT"] == "1"
    site = (ROOT / "deploy" / "nginx.conf").read_text()
    assert "server app:8000;" in site and "listen 8000;" in site


def test_compose_wires_the_app_to_its_services(compose: dict[str, Any]) -> None:
    env = compose["services"]["app"]["environment"]
    worker_env = dict(compose["services"]["worker"]["environment"])
    # The worker has the app's settings, plus its own metrics endpoint.
    assert worker_env.pop("OTP_WORKER_METRICS_PORT") == "9100"
    assert worker_env.pop("OTP_WORKER_METRICS_ADDRESS") == "0.0.0.0"
    # ...and the file its health check reads (see worker/), on the tmpfs.
    heartbeat = worker_env.pop("WORKER_HEARTBEAT_FILE")
    assert heartbeat in str(compose["services"]["worker"]["healthcheck"]["test"])
    assert worker_env == env
    assert env["APP_ENV"] == "production"
    assert env["DATABASE_URL"].startswith("postgresql+psycopg://")
    assert "@postgres:5432/" in env["DATABASE_URL"]
    assert env["REDIS_URL"].startswith("redis://redis:")
    assert env["CELERY_BROKER_URL"] != env["REDIS_URL"]
    assert env["MAIL_SERVER"] == "mailpit"
    # Secrets are never defaulted: compose refuses to start without them.
    for key in ("SECRET_KEY", "JWT_SECRET_KEY"):
        assert re.fullmatch(r"\$\{" + key + r":\?[^}]+\}", env[key]), env[key]


def test_metrics_add_up_every_process_from_an_empty_directory(compose: dict[str, Any]) -> None:
    for name in ("app", "worker"):
        service = compose["services"][name]
        folder = service["environment"]["PROMETHEUS_MULTIPROC_DIR"]
        assert folder in service["tmpfs"], name  # empty at each start, as the client needs


def stop_grace_seconds(value: str) -> int:
    match = re.fullmatch(r"(\d+)s", value)
    assert match, value
    return int(match.group(1))


def test_stop_grace_periods_outlast_the_graceful_timeouts(compose: dict[str, Any]) -> None:
    gunicorn_settings: dict[str, Any] = {}
    exec((ROOT / "gunicorn.conf.py").read_text(), gunicorn_settings)
    assert gunicorn_settings["worker_class"] == "gthread"
    app_grace = stop_grace_seconds(compose["services"]["app"]["stop_grace_period"])
    assert app_grace > gunicorn_settings["graceful_timeout"]
    assert stop_grace_seconds(compose["services"]["worker"]["stop_grace_period"]) >= app_grace


def test_the_image_runs_as_a_non_root_user_and_boots_with_the_script() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.\d+-slim\b", dockerfile, re.MULTILINE)
    users = re.findall(r"^USER\s+(\S+)", dockerfile, re.MULTILINE)
    assert users and users[-1] not in {"root", "0"}
    assert re.search(r'^CMD \["\./boot\.sh"\]', dockerfile, re.MULTILINE)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", ".env"} <= set(ignored)


def check_against_the_compose_schema(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
         str(path)],
        capture_output=True, text=True, timeout=60,
    )


def test_the_compose_file_follows_the_compose_specification(tmp_path: Path) -> None:
    """A real parser on every machine, Docker or not: the Compose Specification's own JSON
    schema (vendored by check-jsonschema), merge keys resolved as compose resolves them."""
    checked = check_against_the_compose_schema(ROOT / "docker-compose.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # It is a real check: a misspelt key of a service is refused.
    broken = tmp_path / "docker-compose.yml"
    text = (ROOT / "docker-compose.yml").read_text()
    broken.write_text(text.replace("    image:", "    imagee:", 1))
    refused = check_against_the_compose_schema(broken)
    assert refused.returncode == 1 and "'imagee' was unexpected" in refused.stdout


def test_docker_compose_config_accepts_the_file() -> None:
    problem = compose_problem()
    if problem:
        pytest.skip(f"NOT RUN: no compose command to validate docker-compose.yml ({problem})")
    compose = [*(compose_command() or []), "-f", str(ROOT / "docker-compose.yml")]
    env = {**os.environ, "SECRET_KEY": SUITE_SECRET_KEY, "JWT_SECRET_KEY": SUITE_JWT_SECRET_KEY}
    checked = subprocess.run(
        [*compose, "config", "--quiet"],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert checked.returncode == 0, checked.stderr
    env.pop("SECRET_KEY")
    refused = subprocess.run(
        [*compose, "config", "--quiet"],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert refused.returncode != 0 and "SECRET_KEY" in refused.stderr


@pytest.mark.live
def test_the_boot_script_migrates_then_execs_gunicorn(
    redis_url: str, tmp_path: Path
) -> None:
    database = tmp_path / "boot.db"
    port = free_port()
    env = node_environment(
        redis_url=f"{redis_url}/0", broker_url=f"{redis_url}/1",
        database_url=f"sqlite:///{database}", mail_port=1,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        GUNICORN_BIND=f"127.0.0.1:{port}", WEB_CONCURRENCY="1",
    )
    process = spawn([str(ROOT / "boot.sh")], env, tmp_path / "boot.log")
    try:
        def serving() -> bool:
            assert process.poll() is None, (tmp_path / "boot.log").read_text()
            try:
                import urllib.request

                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    return bool(r.status == 200)
            except OSError:
                return False

        wait_until(serving, 30, "the booted app to answer")
        with sqlite3.connect(database) as connection:
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
        assert {"users", "alembic_version"} <= tables
        # exec: the script's process *is* gunicorn, so SIGTERM from the platform reaches it.
        cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes()
        assert b"gunicorn" in cmdline and b"boot.sh" not in cmdline
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        # gunicorn's own lines are JSON, like the app's: one stream of JSON lines.
        log = (tmp_path / "boot.log").read_text()
        listening = [line for line in log.splitlines() if "Listening at" in line]
        assert listening and json.loads(listening[0])["logger"] == "gunicorn.error", log
        assert not re.search(r"^\[\d{4}-\d\d-\d\d [^]]*\] \[\d+\] \[INFO\]", log, re.M), log
    finally:
        stop(process)
