"""Optional local services some tests use, probed once per run.

RabbitMQ and the `docker compose` plugin are not started by the suite. When one is
missing, its tests do not run, and the report header and the closing summary say so
in plain words, so a green run never hides what it did not check.
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


@functools.cache
def compose_problem() -> str | None:
    """None when `docker compose` (the v2 plugin) runs, else why not."""
    if not shutil.which("docker"):
        return "the docker client is not installed"
    try:
        result = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"`docker compose version` failed: {error}"
    if result.returncode != 0:
        return "the docker client is installed but its compose plugin is missing"
    return None


def status_lines() -> list[str]:
    """One line per optional service: what runs and what does not."""
    rabbit, compose = rabbitmq_problem(), compose_problem()
    return [
        f"RabbitMQ ({RABBITMQ_URL.split('@')[-1]}): "
        + ("answers; the amqp:// email flow test runs." if rabbit is None else
           f"NOT RUN - the amqp:// email flow test did not run ({rabbit})."),
        "docker compose: "
        + ("available; docker-compose.yml is validated with `docker compose config`."
           if compose is None else
           f"NOT RUN - `docker compose config` did not validate docker-compose.yml ({compose});"
           " its structure checks ran."),
    ]
