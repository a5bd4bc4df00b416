"""Real app nodes for scale-out tests: gunicorn and Celery worker subprocesses, and
in-process apps wired to other Redis topologies or brokers, each with its own worker.

Subprocess nodes are started the way a deployment starts them (gunicorn with
gunicorn.conf.py, `celery -A worker worker`), configured only through environment
variables, on loopback ports. Every wait is bounded and every process or thread is
stopped by the fixture that started it.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from app.devtools.inbox import Inbox
from app.devtools.redis_cluster import stop_process
from app.devtools.redis_server import free_port, start_server
from app.extensions import db
from support import SUITE_JWT_SECRET_KEY, SUITE_SECRET_KEY, AuthActions

ROOT = Path(__file__).resolve().parent.parent


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `condition` until true; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def node_environment(
    *, redis_url: str, broker_url: str, database_url: str, mail_port: int, **extra: str
) -> dict[str, str]:
    """Environment of one app or worker node: only variables, as in a deployment."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("OTP_", "MAIL_", "JWT_", "REDIS_", "CELERY_", "DATABASE_"))
    }
    env.update(
        APP_ENV="testing",
        FLASK_APP="wsgi",
        PYTHONPATH=str(ROOT),
        SECRET_KEY=SUITE_SECRET_KEY,
        JWT_SECRET_KEY=SUITE_JWT_SECRET_KEY,
        REDIS_URL=redis_url,
        CELERY_BROKER_URL=broker_url,
        DATABASE_URL=database_url,
        MAIL_SERVER="127.0.0.1",
        MAIL_PORT=str(mail_port),
        MAIL_USE_TLS="false",
        MAIL_USE_SSL="false",
        OTP_ALLOW_SIGNUP="true",
        GUNICORN_ACCESS_LOG="",
    )
    env.update(extra)
    return env


def served_environment(
    redis_url: str, database_url: str, inbox: Inbox, **extra: str
) -> dict[str, str]:
    """A node's environment on the suite's services, with rate limits no test reaches."""
    return node_environment(
        redis_url=f"{redis_url}/0", broker_url=f"{redis_url}/1", database_url=database_url,
        mail_port=inbox.port,  # type: ignore[attr-defined]
        OTP_RATE_LIMIT_REQUEST="100000 per hour", OTP_RATE_LIMIT_VERIFY="100000 per hour",
        OTP_RATE_LIMIT_REFRESH="100000 per hour", OTP_RATE_LIMIT_LINK="100000 per hour",
        **extra,
    )


@dataclass
class Answer:
    """A response as it came over the wire."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def json(self) -> Any:
        return json.loads(self.body)

    def error_code(self) -> str:
        """The JSON envelope's code (fails on any other body, an HTML page included)."""
        assert (self.header("Content-Type") or "").startswith("application/json"), self.body
        return str(self.json()["error"]["code"])

    def set_cookies(self) -> dict[str, str]:
        """Set-Cookie headers by cookie name."""
        return {
            value.split("=", 1)[0]: value for name, value in self.headers
            if name.lower() == "set-cookie"
        }


class HTTPEndpoint:
    """Requests to a server on a loopback port: a gunicorn node, or the proxy in front."""

    port: int
    def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        token: str | None = None,
        source: str = "127.0.0.1",
    ) -> tuple[int, dict[str, Any]]:
        """One request on a fresh connection from loopback address `source`: (status, JSON)."""
        connection = http.client.HTTPConnection(
            "127.0.0.1", self.port, timeout=15, source_address=(source, 0)
        )
        try:
            headers = {"Connection": "close"}
            if body is not None:
                headers["Content-Type"] = "application/json"
            if token:
                headers["Authorization"] = f"Bearer {token}"
            data = json.dumps(body).encode() if body is not None else None
            connection.request(method, path, body=data, headers=headers)
            response = connection.getresponse()
            raw = response.read()
            return response.status, (json.loads(raw) if raw else {})
        finally:
            connection.close()

    def exchange(
        self,
        method: str,
        path: str,
        body: bytes | Iterable[bytes] | None = None,
        headers: dict[str, str] | None = None,
        *,
        source: str = "127.0.0.1",
    ) -> Answer:
        """One request with the given headers and raw body on a fresh connection.

        An iterable body is sent chunked (Transfer-Encoding: chunked, no Content-Length).
        """
        connection = http.client.HTTPConnection(
            "127.0.0.1", self.port, timeout=15, source_address=(source, 0)
        )
        try:
            chunked = body is not None and not isinstance(body, bytes)
            connection.request(
                method, path, body=body, headers={"Connection": "close", **(headers or {})},
                encode_chunked=chunked,
            )
            response = connection.getresponse()
            return Answer(response.status, response.getheaders(), response.read())
        finally:
            connection.close()

    def post_json(
        self, path: str, payload: Any, headers: dict[str, str] | None = None, **options: Any
    ) -> Answer:
        body = json.dumps(payload).encode()
        return self.exchange(
            "POST", path, body, {"Content-Type": "application/json", **(headers or {})}, **options
        )



class WebNode(HTTPEndpoint):
    """One gunicorn instance serving wsgi:app with the deployment's gunicorn.conf.py."""

    def __init__(self, env: dict[str, str], logs: Path, name: str, *gunicorn_args: str) -> None:
        self.port = free_port()
        self.name = name
        self.log_path = logs / f"{name}.log"
        self.process = spawn(
            [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"),
             "--bind", f"127.0.0.1:{self.port}", "--workers", "1", *gunicorn_args, "wsgi:app"],
            env, self.log_path,
        )

    def wait_ready(self, timeout: float = 20.0) -> WebNode:
        def answers() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log()}")
            try:
                return self.request("GET", "/healthz")[0] == 200
            except OSError:
                return False

        wait_until(answers, timeout, f"{self.name} to answer")
        return self

    def holds_connections_from(self, client_ports: set[int]) -> bool:
        """True once gunicorn's workers have accepted connections from all these ports.

        A connection still in the listen backlog belongs to no process; once accepted it
        is the worker's, and a graceful stop serves it before the worker exits.
        """
        held = set()
        for worker in psutil.Process(self.process.pid).children():
            for connection in worker.net_connections(kind="tcp"):
                if connection.laddr and connection.laddr.port == self.port and connection.raddr:
                    held.add(connection.raddr.port)
        return client_ports <= held

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.process.send_signal(signum)

    def stop(self) -> None:
        stop(self.process)


NGINX = os.environ.get("NGINX_PATH", "/usr/sbin/nginx")
NGINX_CONFIG = ROOT / "deploy" / "nginx.conf"


class ProxyNode(HTTPEndpoint):
    """nginx with the deployment's deploy/nginx.conf, in front of one gunicorn node.

    Only the two addresses change: the port nginx listens on and the upstream's. The
    rest (timeouts, buffering, limits, error pages) is the file compose mounts.
    """

    def __init__(self, upstream_port: int, logs: Path, name: str = "proxy") -> None:
        if not os.access(NGINX, os.X_OK):
            raise RuntimeError(
                f"{NGINX} is missing: run `make test` or `apt-get install nginx`."
            )
        self.port = free_port()
        self.name = name
        workdir = logs / name
        workdir.mkdir(exist_ok=True)
        self.log_path = workdir / "error.log"
        site = workdir / "site.conf"
        site.write_text(proxy_site(NGINX_CONFIG.read_text(), self.port, upstream_port))
        main = workdir / "nginx.conf"
        temp = " ".join(
            f"{kind}_temp_path {workdir / kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        # As root, nginx's workers would switch to `nobody`, who cannot enter the test's
        # private temp directory: they stay root there (a test-only choice).
        user = "user root;" if os.geteuid() == 0 else ""
        main.write_text(
            f"{user} worker_processes 1; daemon off; pid {workdir / 'nginx.pid'};\n"
            f"error_log {self.log_path} info;\n"
            "events { worker_connections 1024; }\n"
            f"http {{ access_log off; {temp} include {site}; }}\n"
        )
        self.process = spawn(
            [NGINX, "-p", str(workdir), "-c", str(main), "-e", str(self.log_path)],
            dict(os.environ), workdir / "stdout.log",
        )

    def wait_ready(self, timeout: float = 20.0) -> ProxyNode:
        def answers() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log()}")
            try:
                return self.request("GET", "/healthz")[0] == 200
            except (OSError, ValueError):
                return False

        wait_until(answers, timeout, f"{self.name} to answer")
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def stop(self) -> None:
        stop(self.process)


def proxy_site(config: str, port: int, upstream_port: int) -> str:
    """deploy/nginx.conf listening on loopback `port`, passing to gunicorn on `upstream_port`."""
    listen, upstream = "listen 8000;", "server app:8000;"
    assert config.count(listen) == 1 and config.count(upstream) == 1
    return config.replace(listen, f"listen 127.0.0.1:{port};").replace(
        upstream, f"server 127.0.0.1:{upstream_port};"
    )


class WorkerNode:
    """One `celery -A worker worker` process, by default running one task at a time.

    `as_deployed`: the Procfile's command (prefork, Celery's heartbeat, mingle and gossip
    on), not the lean one most tests use.
    """

    def __init__(
        self, env: dict[str, str], logs: Path, name: str, pool: str = "solo",
        queue: str | None = None, *, concurrency: int = 1, as_deployed: bool = False,
    ) -> None:
        self.name = name
        self.log_path = logs / f"{name}.log"
        lean = [] if as_deployed else [
            "--without-heartbeat", "--without-mingle", "--without-gossip"
        ]
        with self.log_path.open("wb") as log:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                [sys.executable, "-m", "celery", "--quiet", "-A", "worker", "worker",
                 "--pool", pool, "--concurrency", str(concurrency), "--loglevel", "INFO",
                 "--hostname", f"{name}@%h", *lean,
                 *(["--queues", queue] if queue else [])],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout: float = 30.0) -> WorkerNode:
        """Wait for Celery's "<name>@host ready." line: it consumes from then on."""

        def ready() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log()}")
            return f"{self.name}@" in self.log() and " ready." in self.log()

        wait_until(ready, timeout, f"{self.name} to be ready")
        return self

    def kill(self) -> None:
        """SIGKILL the worker and its pool's children at once, as an OOM kill or a lost
        host would: no task of theirs is finished or acknowledged."""
        try:
            family = [psutil.Process(self.process.pid)]
            family += family[0].children(recursive=True)
        except psutil.NoSuchProcess:
            family = []
        for process in family:
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
        self.process.wait(timeout=10)
        psutil.wait_procs(family[1:], timeout=10)

    def received_task_ids(self) -> list[str]:
        """Ids of the tasks this worker took from the broker, from its own log."""
        text = self.log_path.read_text(errors="replace")
        return re.findall(r"Task [\w.]+\[([0-9a-f-]+)\] received", text)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.process.send_signal(signum)

    def stop(self) -> None:
        stop(self.process)


def spawn(command: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start `command` in the project root, its output going to `log_path`."""
    with log_path.open("wb") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def stop_all(processes: list[subprocess.Popen[bytes]], timeout: float = 15.0) -> None:
    """SIGTERM them all at once, then wait for each (SIGKILL after `timeout`)."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        stop(process, timeout)


def stop(process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM and wait; SIGKILL whatever is still running after `timeout` (15 s: app
    nodes finish their requests first)."""
    stop_process(process, timeout)


@contextmanager
def private_redis(workdir: Path) -> Iterator[str]:
    """A private Redis server (for a broker or a shared store); its URL without a db."""
    port = free_port()
    process = start_server(port, workdir)
    try:
        yield f"redis://127.0.0.1:{port}"
    finally:
        stop(process)


@contextmanager
def app_with_worker(
    config: type, logs: Path, *, queue: str | None = None, pool: str = "solo", **worker_env: str
) -> Iterator[Flask]:
    """An in-process app built from `config`, and a Celery worker process on its settings.

    The worker is a subprocess, as in a deployment: Celery's in-thread test worker keeps
    its stop flag in process-wide state, which would also stop the suite's own worker.
    `queue` names the task queue of both, for a broker that other runs may share.
    """
    app = create_app(config)
    if queue:
        app.extensions["celery"].conf.task_default_queue = queue
    env = node_environment(
        redis_url=config.OTP_REDIS_URL,  # type: ignore[attr-defined]
        broker_url=config.OTP_CELERY_BROKER_URL,  # type: ignore[attr-defined]
        database_url=config.SQLALCHEMY_DATABASE_URI,  # type: ignore[attr-defined]
        mail_port=config.MAIL_PORT,  # type: ignore[attr-defined]
        **worker_env,
    )
    worker = WorkerNode(env, logs, "worker", pool=pool, queue=queue)
    try:
        worker.wait_ready()
        yield app
    finally:
        # The tests have waited for every email they asked for: a cold stop loses nothing.
        if worker.process.poll() is None:
            worker.signal(signal.SIGQUIT)
        worker.stop()
        release_app(app)


def release_app(app: Flask) -> None:
    """Close an app's database and broker connections now, not whenever it is collected."""
    with app.app_context():
        db.engine.dispose()
    app.extensions["celery"].close()


def client_from(app: Flask, address: str) -> FlaskClient:
    """A test client whose requests come from `address`, so per-IP limits stay per test."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def auth_actions(app: Flask, inbox: Inbox, address: str) -> AuthActions:
    return AuthActions(client_from(app, address), inbox, app)
