"""The extension as a host installs it: a wheel in a fresh virtualenv, under examples/host_app.

The wheel is built once per test session and installed, with gunicorn, into a new
virtualenv whose dependencies come from the registry, pinned by requirements.txt.
The example host then runs from that virtualenv as a deployment would (gunicorn and
`celery -A worker worker`), with only examples/host_app on its path, so
`flask_email_signin` can only come from the installed wheel. Everything is checked
over HTTP against the suite's own Redis and SMTP inbox.
"""

from __future__ import annotations

import base64
import functools
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tomllib
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from live_stack import ROOT, stop, wait_until

from app.devtools.inbox import Inbox, plain_text
from app.devtools.redis_server import free_port

pytestmark = pytest.mark.live

HOST_DIR = ROOT / "examples" / "host_app"
# Variables of the suite's own app (or of the shell) that must not reach the host.
FOREIGN_PREFIXES = (
    "OTP_", "MAIL_", "JWT_", "REDIS_", "CELERY_", "DATABASE_", "FLASK_", "PYTHON", "HOST_",
    "GUNICORN", "PROMETHEUS", "VIRTUAL_ENV", "APP_ENV", "SECRET_KEY", "LINK_BASE_URL",
)
# Each test signs in from its own loopback address, so per-IP limits stay per test.
CODE_CLIENT, LINK_CLIENT, LOGOUT_CLIENT, LIMIT_CLIENT, PATH_CLIENT, COOKIE_CLIENT = (
    "127.0.0.21", "127.0.0.22", "127.0.0.23", "127.0.0.24", "127.0.0.25", "127.0.0.26"
)


def run(command: list[str], log: Path, timeout: float, **kwargs: Any) -> None:
    """Run a setup command, its output in `log`; fail with that output if it fails."""
    with log.open("wb") as out:
        result = subprocess.run(
            command, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, check=False, **kwargs
        )
    if result.returncode != 0:
        pytest.fail(f"{' '.join(command)} exited {result.returncode}:\n{tail(log)}")


def tail(path: Path, size: int = 4000) -> str:
    return path.read_text(errors="replace")[-size:] if path.exists() else "(no log)"


@pytest.fixture(scope="session")
def extension_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The extension's wheel, built once from a copy of the sources.

    Built from a copy so that setuptools' build/ and egg-info stay out of the work tree.
    The build tools are the pinned ones of requirements-dev.txt, without isolation.
    """
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "src", source / "src",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"),
    )
    dist = work / "dist"
    run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist),
         str(source)],
        work / "build.log", timeout=120,
    )
    wheels = list(dist.glob("flask_email_signin-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="session")
def host_python(extension_wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv holding the wheel, its dependencies and gunicorn: its python."""
    work = tmp_path_factory.mktemp("host-venv")
    venv = work / "venv"
    run([sys.executable, "-m", "venv", str(venv)], work / "venv.log", timeout=120)
    # pip takes no extras in a constraints file: requirements.txt's pins without them.
    pins = re.sub(r"\[[^\]]*\]", "", (ROOT / "requirements.txt").read_text())
    constraints = work / "constraints.txt"
    constraints.write_text(pins)
    python = venv / "bin" / "python"
    run(
        [str(python), "-m", "pip", "install", "--quiet", "-c", str(constraints),
         str(extension_wheel), "gunicorn"],
        work / "pip.log", timeout=300, env=clean_environment(venv),
    )
    return python


def clean_environment(venv: Path, **extra: str) -> dict[str, str]:
    """The process environment without the suite's settings, the virtualenv's bin first."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(FOREIGN_PREFIXES)}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def host_environment(python: Path, **settings: str) -> dict[str, str]:
    """The host's environment: only examples/host_app on the path, settings as variables."""
    return clean_environment(
        python.parent.parent,
        PYTHONPATH=str(HOST_DIR),
        PYTHONDONTWRITEBYTECODE="1",
        **settings,
    )


def spawn(command: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start `command` in examples/host_app, its output going to `log_path`."""
    with log_path.open("wb") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            command, cwd=HOST_DIR, env=env, stdout=log, stderr=subprocess.STDOUT
        )


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")


@dataclass
class HostStack:
    """The example host served by gunicorn, with its Celery worker, both from the venv."""

    port: int
    logs: Path
    inbox: Inbox
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, command: list[str], env: dict[str, str]) -> None:
        self.processes[name] = spawn(command, env, self.logs / f"{name}.log")

    def log(self, name: str) -> str:
        return tail(self.logs / f"{name}.log")

    def all_logs(self) -> str:
        return "\n".join(f"--- {name}.log ---\n{self.log(name)}" for name in self.processes)

    def alive(self, name: str) -> bool:
        if self.processes[name].poll() is not None:
            raise RuntimeError(f"{name} exited:\n{self.log(name)}")
        return True

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: dict[str, Any] | None = None,
        form: dict[str, str] | None = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        source: str = "127.0.0.1",
    ) -> Response:
        """One request on a fresh connection from loopback address `source`."""
        connection = http.client.HTTPConnection(
            "127.0.0.1", self.port, timeout=15, source_address=(source, 0)
        )
        try:
            sent = {"Connection": "close", **(headers or {})}
            data = None
            if json_body is not None:
                sent["Content-Type"] = "application/json"
                data = json.dumps(json_body).encode()
            elif form is not None:
                sent["Content-Type"] = "application/x-www-form-urlencoded"
                data = urllib.parse.urlencode(form).encode()
            if token:
                sent["Authorization"] = f"Bearer {token}"
            connection.request(method, path, body=data, headers=sent)
            response = connection.getresponse()
            return Response(response.status, response.headers, response.read())
        finally:
            connection.close()

    def answers(self) -> bool:
        self.alive("web")
        try:
            return self.request("GET", "/").status == 200
        except OSError:
            return False

    def email_text(self, address: str, count: int = 1) -> str:
        return plain_text(self.inbox.wait_for(address, count=count, timeout=20)[count - 1])

    def request_code(self, address: str, source: str) -> Response:
        return self.request("POST", "/account/request-otp", json_body={"email": address},
                            source=source)

    def sign_in(self, address: str, source: str) -> dict[str, Any]:
        """Sign in by emailed code; the verify-otp answer."""
        return dict(self.verified(address, source).json())

    def verified(self, address: str, source: str) -> Response:
        """Request a code, read it from the inbox and verify it: the 200 response."""
        sent = self.request_code(address, source)
        assert sent.status == 202, sent.body
        match = re.search(r"\b(\d{6})\b", self.email_text(address))
        assert match, "no code in the email"
        verified = self.request("POST", "/account/verify-otp",
                                json_body={"email": address, "otp": match.group(1)},
                                source=source)
        assert verified.status == 200, verified.body
        return verified


@pytest.fixture(scope="module")
def host(
    host_python: Path, redis_url: str, inbox: Inbox, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HostStack]:
    """gunicorn (one worker) and a solo-pool Celery worker running the example host."""
    work = tmp_path_factory.mktemp("host")
    port = free_port()
    env = host_environment(
        host_python,
        SECRET_KEY=secrets.token_urlsafe(48),
        JWT_SECRET_KEY=secrets.token_urlsafe(48),
        DATABASE_URL=f"sqlite:///{work / 'host.db'}",
        REDIS_URL=f"{redis_url}/5",
        CELERY_BROKER_URL=f"{redis_url}/6",
        MAIL_SERVER="127.0.0.1",
        MAIL_PORT=str(inbox.port),  # type: ignore[attr-defined]
        LINK_BASE_URL=f"http://127.0.0.1:{port}",
        OTP_RATE_LIMIT_REQUEST="3 per minute",
    )
    stack = HostStack(port, work, inbox)
    try:
        stack.start("web", [str(host_python), "-m", "gunicorn", "--workers", "1",
                            "--bind", f"127.0.0.1:{port}", "--graceful-timeout", "5",
                            "--no-control-socket",
                            "wsgi:app"], env)
        wait_until(stack.answers, 30, "the host's gunicorn to answer")
        # Started once the web process has created the tables (both run create_all).
        stack.start("worker", [str(host_python), "-m", "celery", "-A", "worker", "worker",
                               "--pool=solo", "--loglevel=INFO", "--hostname", "host-worker@%h",
                               "--without-heartbeat", "--without-mingle", "--without-gossip"],
                    env)
        wait_until(lambda: stack.alive("worker") and " ready." in stack.log("worker"),
                   30, "the host's Celery worker to be ready")
        yield stack
    except Exception as error:
        error.add_note(stack.all_logs())
        raise
    finally:
        for process in stack.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in stack.processes.values():
            stop(process, timeout=15)


def shows_logs_on_failure(test: Callable[..., None]) -> Callable[..., None]:
    """On failure, add the host's process logs to the error pytest reports."""

    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            test(*args, **kwargs)
        except Exception as error:
            error.add_note(kwargs["host"].all_logs())
            raise

    return wrapper


def new_address(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"


def test_the_extension_comes_from_the_installed_wheel(host_python: Path) -> None:
    result = subprocess.run(
        [str(host_python), "-c",
         "import importlib.metadata as m, flask_email_signin as f, host; "
         "print(f.__file__); print(m.version('flask-email-signin')); print(host.__file__)"],
        cwd=HOST_DIR, env=host_environment(host_python), capture_output=True, text=True,
        timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    module_file, version, host_file = result.stdout.split()
    site_packages = host_python.parent.parent / "lib"
    assert Path(module_file).is_relative_to(site_packages), module_file
    assert "site-packages" in Path(module_file).parts
    assert not Path(module_file).is_relative_to(ROOT / "src")
    assert version == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert Path(host_file).is_relative_to(HOST_DIR)


@shows_logs_on_failure
def test_sign_in_by_code_reaches_the_hosts_own_view(host: HostStack) -> None:
    address = new_address("code")
    signed_in = host.sign_in(address, CODE_CLIENT)
    assert signed_in["token_type"] == "bearer"

    dashboard = host.request("GET", "/dashboard", token=signed_in["access_token"])
    assert dashboard.status == 200, dashboard.body
    assert dashboard.json() == {"user_id": str(signed_in["user"]["id"]), "name": address}


@shows_logs_on_failure
def test_sign_in_by_link_sets_the_session_cookies(host: HostStack) -> None:
    address = new_address("link")
    assert host.request_code(address, LINK_CLIENT).status == 202
    match = re.search(r"(https?://\S+)#(\S+)", host.email_text(address))
    assert match, "no sign-in link in the email"
    url, secret = urllib.parse.urlsplit(match.group(1)), match.group(2)
    assert f"{url.scheme}://{url.netloc}" == f"http://127.0.0.1:{host.port}"
    assert re.fullmatch(r"/account/link/[A-Za-z0-9_-]+", url.path), url.path

    page = host.request("GET", url.path, source=LINK_CLIENT)
    assert page.status == 200, page.body
    assert page.content_type.startswith("text/html")

    used = host.request("POST", url.path, form={"secret": secret},
                        headers={"Sec-Fetch-Site": "same-origin"}, source=LINK_CLIENT)
    assert used.status == 303, used.body
    assert used.headers["Location"].endswith("/account/login")
    access = set_cookies(used).get("access_token_cookie", "")
    assert "Secure" in access and "HttpOnly" in access, used.headers


@shows_logs_on_failure
def test_the_refresh_cookie_goes_only_to_the_extension(host: HostStack) -> None:
    cookies = set_cookies(host.verified(new_address("path"), PATH_CLIENT))
    assert "Path=/account;" in f"{cookies['refresh_token_cookie']};"


@shows_logs_on_failure
def test_token_cookies_follow_the_extensions_defaults(host: HostStack) -> None:
    cookies = set_cookies(host.verified(new_address("cookies"), COOKIE_CLIENT))
    for name in ("access_token_cookie", "refresh_token_cookie"):
        assert "Expires=" in cookies[name] or "Max-Age=" in cookies[name], cookies[name]
    refresh = jwt_claims(cookies["refresh_token_cookie"].split(";")[0].split("=", 1)[1])
    assert refresh["exp"] - refresh["iat"] == 14 * 24 * 3600


def set_cookies(response: Response) -> dict[str, str]:
    """The response's Set-Cookie headers by cookie name."""
    headers = response.headers.get_all("Set-Cookie") or []
    return {header.split("=", 1)[0]: header for header in headers}


def jwt_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


@shows_logs_on_failure
def test_logout_revokes_the_token_on_the_hosts_own_view(host: HostStack) -> None:
    token = host.sign_in(new_address("logout"), LOGOUT_CLIENT)["access_token"]
    assert host.request("GET", "/dashboard", token=token).status == 200

    logout = host.request("POST", "/account/logout", token=token, source=LOGOUT_CLIENT)
    assert logout.status == 200, logout.body
    refused = host.request("GET", "/dashboard", token=token)
    assert refused.status == 401, refused.body
    assert "revoked" in refused.json()["msg"]  # the app's own JWTManager answers on its views
    assert host.request("GET", "/account/me", token=token).status == 401


@shows_logs_on_failure
def test_request_otp_is_limited_per_ip(host: HostStack) -> None:
    """OTP_RATE_LIMIT_REQUEST="3 per minute", set through the host's environment."""
    statuses = [host.request_code(new_address("limit"), LIMIT_CLIENT).status for _ in range(3)]
    assert statuses == [202, 202, 202]

    refused = host.request_code(new_address("limit"), LIMIT_CLIENT)
    assert refused.status == 429, refused.body
    assert refused.json()["error"]["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) > 0


@shows_logs_on_failure
def test_the_hosts_404_page_stays_html(host: HostStack) -> None:
    page = host.request("GET", "/nope")
    assert page.status == 404
    assert page.content_type.startswith("text/html")
    assert b"Host: no such page" in page.body

    api = host.request("GET", "/account/nope")
    assert api.status == 404
    assert api.content_type.startswith("application/json")
    assert api.json()["error"]["code"] == "not_found"


def test_production_guard_refuses_a_short_secret(
    host_python: Path, tmp_path: Path, redis_url: str
) -> None:
    result = subprocess.run(
        [str(host_python), "-c", "from host import create_app; create_app()"],
        cwd=HOST_DIR,
        env=host_environment(
            host_python,
            HOST_PRODUCTION="1",
            SECRET_KEY="short",
            JWT_SECRET_KEY=secrets.token_urlsafe(48),
            DATABASE_URL=f"sqlite:///{tmp_path / 'guard.db'}",
            REDIS_URL=f"{redis_url}/5",
            CELERY_BROKER_URL=f"{redis_url}/6",
        ),
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode != 0, result.stdout
    assert "UnsafeSettingError" in result.stderr, result.stderr
    assert "UnsafeSettingError: SECRET_KEY is shorter than 32 bytes" in result.stderr, (
        result.stderr
    )
    assert not (tmp_path / "guard.db").exists(), "the app went on past the guard"
