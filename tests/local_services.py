"""Optional local services some tests use, probed once per run.

RabbitMQ and a compose command (`docker compose` or `docker-compose`) are not provided
by the suite (`make test` installs Debian's `docker-compose` when it can: as root, with
apt). When one is missing, its tests do not run, and the report header and the closing
summary say so in plain words, so a green run never hides what it did not check.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess

from kombu import Connection

RABBITMQ_URL = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")


@functools.cache
def rabbitmq_problem() -> str | None:
    """None when RabbitMQ at RABBITMQ_URL accepts an AMQP login, else why not."""
    try:
        with Connection(RABBITMQ_URL, connect_timeout=2) as connection:
            connection.connect()
    except Exception as error:  # any failure means "not usable here"; the reason is shown
        return f"{type(error).__name__}: {error}"
    return None


def _runs(command: list[str]) -> bool:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


@functools.cache
def compose_command() -> list[str] | None:
    """`docker compose` (the v2 plugin), else Debian's `docker-compose`; None if neither runs.

    `config` only reads and validates the file: neither needs a Docker engine.
    """
    if shutil.which("docker") and _runs(["docker", "compose", "version"]):
        return ["docker", "compose"]
    if shutil.which("docker-compose") and _runs(["docker-compose", "version"]):
        return ["docker-compose"]
    return None


def compose_problem() -> str | None:
    """None when a compose command can validate docker-compose.yml, else why not."""
    if compose_command() is not None:
        return None
    if not shutil.which("docker"):
        return "neither the docker client nor docker-compose is installed"
    return "the docker client is installed but neither its compose plugin nor docker-compose"


def status_lines() -> list[str]:
    """One line per optional service: what runs and what does not."""
    rabbit, compose = rabbitmq_problem(), compose_problem()
    return [
        f"RabbitMQ ({RABBITMQ_URL.split('@')[-1]}): "
        + ("answers; the amqp:// email flow test runs." if rabbit is None else
           f"NOT RUN - the amqp:// email flow test did not run ({rabbit})."),
        "docker compose: "
        + (f"available; docker-compose.yml is validated with `{' '.join(compose_command() or [])}"
           " config`." if compose is None else
           f"NOT RUN - `docker compose config` did not validate docker-compose.yml ({compose});"
           " its structure checks ran."),
    ]
