"""The real stack on loopback, started and stopped by the benchmark.

Two private Redis servers (state store and Celery broker apart, so each one's
counters show only its own traffic), an SMTP sink that timestamps every
message, gunicorn serving the product app plus `/bench/ping`, and a Celery
worker started on demand. Nothing here touches a server it did not start.
"""

from __future__ import annotations

import ctypes
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import psutil
import redis
import sqlalchemy as sa

from app.devtools.inbox import start_inbox
from app.devtools.redis_server import answers, free_port, server_command

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
GUNICORN_CONFIG = Path(__file__).with_name("gunicorn_conf.py")
UNMEASURED_ENV = frozenset(
    {"PYTHONTRACEMALLOC", "PYTHONDEVMODE", "PYTHONPROFILEIMPORTTIME", "PYTHONMALLOC",
     "PYTHONMALLOCSTATS", "PYTHONASYNCIODEBUG"}
)
PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None)  # loaded here: the child between fork and exec only calls it


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM if the bench process dies (Linux), so an
    interrupted run leaves no gunicorn or worker behind."""
    prctl = getattr(_LIBC, "prctl", None)
    if prctl is not None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Arrival:
    at: float
    raw: bytes


class Sink:
    """aiosmtpd handler: accepts every message, keeps raw bytes and arrival time.

    Parsing is left to readers, so accepting a message costs the sink as
    little as possible (the worker's rate is what scenario 6 measures).
    """

    def __init__(self) -> None:
        self.arrivals: dict[str, list[Arrival]] = defaultdict(list)
        self.count = 0
        self._arrived = threading.Condition()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        now = time.time()
        with self._arrived:
            for rcpt in envelope.rcpt_tos:
                self.arrivals[rcpt.lower()].append(Arrival(now, envelope.content))
            self.count += 1
            self._arrived.notify_all()
        return "250 Message accepted for delivery"

    def wait_for(self, address: str, timeout: float = 30.0) -> Arrival:
        deadline = time.monotonic() + timeout
        with self._arrived:
            while not self.arrivals.get(address):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no email to {address} within {timeout}s")
                self._arrived.wait(remaining)
            return self.arrivals[address][0]

    def wait_for_count(self, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._arrived:
            while self.count < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._arrived.wait(remaining)
            return True

    def arrival_times(self) -> list[float]:
        with self._arrived:
            return sorted(a.at for boxes in self.arrivals.values() for a in boxes)


def code_in(raw: bytes, length: int) -> str:
    """The sign-in code in a message's plain-text part."""
    message = message_from_bytes(raw, policy=policy.default)
    part = message.get_body(preferencelist=("plain",))
    text = part.get_content() if part is not None else ""
    match = re.search(rf"\b(\d{{{length}}})\b", text)
    if not match:
        raise ValueError("no code in the email")
    return match.group(1)


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


@dataclass
class Stack:
    """Handles to every server of one benchmark run."""

    workdir: Path
    gunicorn_workers: int
    gunicorn_threads: int
    worker_concurrency: int = 1
    env: dict[str, str] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    sink: Sink = field(default_factory=Sink)
    http_port: int = 0
    bare_port: int = 0
    _processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _controller: Any = None
    _private_database: tuple[str, str] | None = None  # (server URL, database name)
    _clients: dict[str, redis.Redis] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def bare_url(self) -> str:
        """The bare Flask app of the ceiling (bench/bare.py), same gunicorn settings."""
        return f"http://127.0.0.1:{self.bare_port}"

    def start(self, database_url: str | None = None) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        state_port, broker_port, smtp_port = free_port(), free_port(), free_port()
        self._processes["redis"] = self._start_redis(state_port, "redis-state")
        self._processes["broker"] = self._start_redis(broker_port, "redis-broker")
        self._controller = start_inbox(self.sink, smtp_port)  # type: ignore[arg-type]
        self.settings = {
            "APP_ENV": "production",
            "SECRET_KEY": secrets.token_urlsafe(48),
            "JWT_SECRET_KEY": secrets.token_urlsafe(48),
            "REDIS_URL": f"redis://127.0.0.1:{state_port}/0",
            "CELERY_BROKER_URL": f"redis://127.0.0.1:{broker_port}/0",
            "SQLALCHEMY_DATABASE_URI": self.database(database_url),
            "MAIL_SERVER": "127.0.0.1",
            "MAIL_PORT": smtp_port,
            "MAIL_USE_TLS": False,
            "MAIL_USE_SSL": False,
            "OTP_ALLOW_SIGNUP": True,
            # The per-IP limits stay on, so their Redis cost is measured, but every bench
            # request comes from 127.0.0.1: the defaults' shape (one window each, see
            # config.py), raised far above what a run sends.
            "OTP_RATE_LIMIT_REQUEST": "100000000 per 10 minutes",
            "OTP_RATE_LIMIT_VERIFY": "100000000 per 10 minutes",
            "OTP_RATE_LIMIT_REFRESH": "100000000 per 10 minutes",
        }
        env_names = {"SQLALCHEMY_DATABASE_URI": "DATABASE_URL"}
        # Debugging switches inherited from a caller (tracemalloc makes every Python
        # process several times slower) would be measured as the product's cost.
        self.env = {k: v for k, v in os.environ.items() if k not in UNMEASURED_ENV}
        self.env["PYTHONPATH"] = str(ROOT)
        for key, value in self.settings.items():
            self.env[env_names.get(key, key)] = str(value).lower() if isinstance(value, bool) \
                else str(value)

    def _start_redis(self, port: int, name: str) -> subprocess.Popen[bytes]:
        """A private server (app.devtools.redis_server's command), ready when it answers."""
        workdir = self.workdir / name
        workdir.mkdir(parents=True, exist_ok=True)
        process = self._spawn(name, server_command(port, workdir))
        deadline = time.monotonic() + 10
        while not answers("127.0.0.1", port):
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"Redis server on port {port} did not start")
            time.sleep(0.05)
        return process

    def database(self, server_url: str | None) -> str:
        """SQLite in the workdir, or a private database created on `server_url`'s server."""
        if not server_url:
            return f"sqlite:///{self.workdir / 'bench.db'}"
        name = f"bench_{uuid.uuid4().hex[:12]}"
        admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        self._private_database = (server_url, name)
        return sa.make_url(server_url).set(database=name).render_as_string(hide_password=False)

    def drop_database(self) -> None:
        if self._private_database is None:
            return
        server_url, name = self._private_database
        admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
        self._private_database = None

    def redis(self, name: str = "redis") -> redis.Redis:
        """One client per server, kept: a new connection's handshake would show in the counts."""
        if name not in self._clients:
            url = self.settings["REDIS_URL" if name == "redis" else "CELERY_BROKER_URL"]
            self._clients[name] = redis.Redis.from_url(url)
        return self._clients[name]

    def start_web(self) -> None:
        """gunicorn with the bench config (see gunicorn_conf.py), ready when ping answers."""
        self.http_port = free_port()
        self._processes["web"] = self._spawn("gunicorn", [
            str(BIN / "gunicorn"), "--config", str(GUNICORN_CONFIG),
            "--bind", f"127.0.0.1:{self.http_port}",
            "--workers", str(self.gunicorn_workers), "--threads", str(self.gunicorn_threads),
            "bench.app:create_bench_app()",
        ])
        self._wait_http(self.base_url + "/bench/ping", self._processes["web"], timeout=60)
        self.bare_port = free_port()
        self._processes["bare"] = self._spawn("bare", [
            str(BIN / "gunicorn"), "--config", str(GUNICORN_CONFIG),
            "--bind", f"127.0.0.1:{self.bare_port}",
            "--workers", str(self.gunicorn_workers), "--threads", str(self.gunicorn_threads),
            "bench.bare:app",
        ])
        self._wait_http(self.bare_url + "/bench/ping", self._processes["bare"], timeout=60)

    def start_worker(self) -> None:
        """The product's Celery worker (`celery -A worker worker`), prefork pool."""
        self._processes["worker"] = self._spawn("worker", [
            str(BIN / "celery"), "-A", "worker", "worker", "--loglevel", "WARNING",
            "--pool", "prefork", "--concurrency", str(self.worker_concurrency),
            "--without-gossip", "--without-mingle",
        ])

    def _spawn(self, name: str, command: list[str]) -> subprocess.Popen[bytes]:
        """Our own venv's binaries, output appended to <workdir>/<name>.log."""
        with (self.workdir / f"{name}.log").open("ab") as log:
            return subprocess.Popen(  # noqa: S603 - fixed commands built here
                command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )

    def stop_worker(self) -> None:
        self._stop("worker")

    def process_tree(self, name: str) -> list[psutil.Process]:
        process = self._processes.get(name)
        if process is None or process.poll() is not None:
            return []
        parent = psutil.Process(process.pid)
        return [parent, *parent.children(recursive=True)]

    def web_worker_processes(self, server: str = "web") -> list[psutil.Process]:
        return self.process_tree(server)[1:]

    def cpu_snapshot(self) -> dict[str, float]:
        """CPU seconds so far of each server, and of this process (SMTP sink, Python clients)."""
        figures = {
            name: cpu_seconds(self.process_tree(name))
            for name in ("web", "bare", "worker", "redis", "broker")
        }
        figures["bench_process"] = cpu_seconds([psutil.Process()])
        return figures

    def stop(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()
        for name in ("worker", "web", "bare", "broker", "redis"):
            self._stop(name)
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
        self.drop_database()

    def _stop(self, name: str) -> None:
        process = self._processes.pop(name, None)
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    @staticmethod
    def _wait_http(url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
                    if response.status == 200:
                        return
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer (see the log in the bench workdir)")
            time.sleep(0.1)
