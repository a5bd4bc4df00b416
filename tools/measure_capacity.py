"""Measure the per-sign-in costs behind docs/SCALING.md, on the real stack on loopback.

    .venv/bin/python tools/measure_capacity.py [--sign-ins 300] [--checks 3000]

Starts a private state Redis and a private broker Redis (apart, so the state store's
counters show only its own traffic), an SMTP sink, one gunicorn process (gunicorn.conf.py,
1 worker x 4 threads) and one Celery worker process (prefork, concurrency 1), then:

1. runs full sign-ins (request a code, read it from the delivered email, verify), and
2. runs protected requests (`GET /auth/me` with a bearer token: the per-request session check),

and reports, per operation, the CPU seconds each process spent (psutil), the state
Redis's commands (INFO commandstats) and CPU (INFO cpu), and its memory growth
(INFO memory, MEMORY USAGE of each kind of key). Costs are divided by the number of
operations, so they do not depend on how busy the machine was; throughputs derived
from them are per fully used core. Writes JSON to stdout and to `--out`.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.devtools.inbox import Inbox, plain_text, start_inbox  # noqa: E402
from app.devtools.redis_server import free_port, start_server  # noqa: E402
from bench.stack import cpu_seconds as process_cpu_seconds  # noqa: E402


def cpu_seconds(process: psutil.Process) -> float:
    """CPU time of a process and its children (gunicorn and Celery fork their workers)."""
    return process_cpu_seconds([process, *process.children(recursive=True)])


def redis_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def command_counts(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


def request(
    port: int, method: str, path: str, body: dict[str, Any] | None = None,
    token: str | None = None,
) -> tuple[int, dict[str, Any]]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        connection.request(method, path, json.dumps(body) if body is not None else None, headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        connection.close()


class Snapshot:
    """CPU of each tier and the state Redis's counters, at one instant."""

    def __init__(self, web: psutil.Process, worker: psutil.Process, state: redis.Redis) -> None:
        self.web, self.worker = cpu_seconds(web), cpu_seconds(worker)
        self.redis_cpu, self.commands = redis_cpu(state), command_counts(state)
        self.memory = int(state.info("memory")["used_memory"])
        self.at = time.monotonic()

    def idle_rates(self, later: Snapshot) -> tuple[float, float, float]:
        """CPU seconds per second each tier spends doing nothing (timers, polling)."""
        span = later.at - self.at
        return (
            (later.web - self.web) / span,
            (later.worker - self.worker) / span,
            (later.redis_cpu - self.redis_cpu) / span,
        )

    def per_operation(
        self, later: Snapshot, count: int, idle: tuple[float, float, float]
    ) -> dict[str, Any]:
        """Costs per operation, less what the same span costs when idle."""
        span = later.at - self.at
        web, worker, red = ((later.web - self.web) - idle[0] * span,
                            (later.worker - self.worker) - idle[1] * span,
                            (later.redis_cpu - self.redis_cpu) - idle[2] * span)
        commands = {
            name: round((later.commands.get(name, 0) - self.commands.get(name, 0)) / count, 2)
            for name in later.commands
            if later.commands.get(name, 0) != self.commands.get(name, 0)
            and not name.startswith(("info", "config", "memory", "scan", "type"))
        }
        return {
            "operations": count,
            "wall_seconds": round(later.at - self.at, 2),
            "web_cpu_ms": round(web / count * 1000, 3),
            "worker_cpu_ms": round(worker / count * 1000, 3),
            "redis_cpu_us": round(red / count * 1e6, 1),
            "redis_commands": round(sum(commands.values()), 2),
            "redis_commands_by_name": dict(sorted(commands.items())),
            "redis_memory_bytes": round((later.memory - self.memory) / count, 1),
        }


def memory_by_key_kind(state: redis.Redis) -> dict[str, dict[str, float]]:
    kinds: dict[str, list[int]] = {}
    for key in state.scan_iter(count=1000):
        text = key.decode(errors="replace")
        text = text.split("/")[0] if text.startswith("LIMITS") else text
        kind = re.sub(r"\{[^}]*\}", "{…}", text)
        kind = re.sub(r"(\{…\}:)[^:]+$", r"\1<id>", kind)
        kinds.setdefault(kind, []).append(int(state.memory_usage(key) or 0))
    return {
        kind: {"keys": len(sizes), "bytes_each": round(sum(sizes) / len(sizes), 1)}
        for kind, sizes in sorted(kinds.items())
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sign-ins", type=int, default=300)
    parser.add_argument("--checks", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "capacity-measurements.json")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="capacity-"))
    state_port, broker_port, smtp_port, web_port = (free_port() for _ in range(4))
    servers = [start_server(state_port, work / "state"), start_server(broker_port, work / "broker")]
    sink = Inbox()
    smtp = start_inbox(sink, smtp_port)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("OTP_", "REDIS_", "MAIL_"))},
        "APP_ENV": "testing", "FLASK_APP": "wsgi", "PYTHONPATH": str(ROOT),
        "SECRET_KEY": "capacity-" + "x" * 40, "JWT_SECRET_KEY": "capacity-" + "y" * 40,
        "REDIS_URL": f"redis://127.0.0.1:{state_port}/0",
        "CELERY_BROKER_URL": f"redis://127.0.0.1:{broker_port}/0",
        "DATABASE_URL": f"sqlite:///{work / 'users.db'}",
        "MAIL_SERVER": "127.0.0.1", "MAIL_PORT": str(smtp_port),
        # Limits on, so their Redis cost is counted, but far above this load.
        "OTP_RATE_LIMIT_REQUEST": "10000000 per hour", "OTP_RATE_LIMIT_VERIFY": "10000000 per hour",
        "GUNICORN_ACCESS_LOG": "", "GUNICORN_LOG_LEVEL": "warning",
    }
    bin_dir = Path(sys.executable).parent
    subprocess.run(  # noqa: S603 (fixed argument lists, no shell)
        [str(bin_dir / "flask"), "db", "upgrade"], cwd=ROOT, env=env, check=True,
        capture_output=True,
    )
    web = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--workers", "1",
         "--threads", "4", "--bind", f"127.0.0.1:{web_port}", "wsgi:app"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "worker", "worker", "--pool", "prefork",
         "--concurrency", "1", "--loglevel", "WARNING", "--without-heartbeat",
         "--without-mingle", "--without-gossip"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    state = redis.Redis(port=state_port)
    tokens: list[str] = []
    lock = threading.Lock()

    def sign_in(n: int) -> None:
        email = f"capacity-{n}-{os.getpid()}@example.com"
        status, _ = request(web_port, "POST", "/auth/request-otp", {"email": email})
        assert status == 202, status
        match = re.search(r"\b(\d{6})\b", plain_text(sink.wait_for(email, timeout=60)[0]))
        assert match
        status, body = request(web_port, "POST", "/auth/verify-otp",
                               {"email": email, "otp": match.group(1)})
        assert status == 200, body
        with lock:
            tokens.append(body["access_token"])

    def check(n: int) -> None:
        status, _ = request(web_port, "GET", "/auth/me", token=tokens[n % len(tokens)])
        assert status == 200

    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if request(web_port, "GET", "/healthz")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("gunicorn did not start")
            time.sleep(0.2)
        procs = psutil.Process(web.pid), psutil.Process(worker.pid)
        with ThreadPoolExecutor(args.concurrency) as pool:
            list(pool.map(sign_in, range(-20, 0)))  # warm-up: imports, script loads, pools
            time.sleep(1.0)
            idle_start = Snapshot(*procs, state)
            time.sleep(10.0)  # nothing running: the baseline each tier burns anyway
            idle = idle_start.idle_rates(Snapshot(*procs, state))
            state.config_resetstat()
            before = Snapshot(*procs, state)
            list(pool.map(sign_in, range(args.sign_ins)))
            time.sleep(1.0)  # let the worker finish writing its idempotency markers
            after_sign_ins = Snapshot(*procs, state)
            list(pool.map(check, range(args.checks)))
            after_checks = Snapshot(*procs, state)
        results = {
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "load_average_1m": round(os.getloadavg()[0], 2),
                        "state_server": "{server_name} {version}".format(
                            server_name=state.info("server").get("server_name", "redis"),
                            version=state.info("server").get("valkey_version")
                            or state.info("server").get("redis_version"))},
            "setup": "1 gunicorn gthread worker x 4 threads, 1 Celery prefork child, SQLite, "
                     "local SMTP sink, rate limits on; client on the same machine",
            "idle_cpu_ms_per_second": {
                "web": round(idle[0] * 1000, 2), "worker": round(idle[1] * 1000, 2),
                "redis": round(idle[2] * 1000, 2),
            },
            "sign_in": before.per_operation(after_sign_ins, args.sign_ins, idle),
            "protected_request": after_sign_ins.per_operation(after_checks, args.checks, idle),
            "redis_memory_by_key_kind": memory_by_key_kind(state),
        }
    finally:
        for process in (web, worker):
            process.terminate()
        for process in (web, worker):
            process.wait(timeout=30)
        smtp.stop()
        for server in servers:
            server.terminate()
            server.wait(timeout=10)
        state.close()
    text = json.dumps(results, indent=2)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
