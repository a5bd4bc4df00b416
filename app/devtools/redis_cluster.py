"""Start a private, real Redis Cluster on loopback ports (tests and local trials).

Each node is the same server binary as app.devtools.redis_server, started with
`--cluster-enabled yes`; `valkey-cli --cluster create` (or `redis-cli`) then splits
the 16384 slots among the masters. Nothing is persisted, except by `restart`, which
saves a node's data on the way down to bring it back as it was.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from .redis_server import free_port, server_binary, start_server


def cli_binary() -> str:
    """`REDIS_CLI_BIN`, else the cli beside the server binary, else one on PATH."""
    explicit = os.environ.get("REDIS_CLI_BIN")
    if explicit:
        return explicit
    folder = Path(server_binary()).parent
    for name in ("valkey-cli", "redis-cli"):
        if (folder / name).exists():
            return str(folder / name)
    found = shutil.which("valkey-cli") or shutil.which("redis-cli")
    if not found:
        raise RuntimeError("No valkey-cli/redis-cli found: set REDIS_CLI_BIN.")
    return found


def stop_process(process: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)


@dataclass
class LocalCluster:
    """A running cluster: its master ports, processes and each node's start arguments."""

    ports: list[int]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    node_args: dict[int, tuple[Path, list[str]]] = field(default_factory=dict)

    def restart(self, port: int) -> float:
        """Stop a node after it saved its data (SHUTDOWN SAVE), start it again with the same
        identity, slots and data; returns the seconds it was down."""
        index = self.ports.index(port)
        with redis.Redis(port=port, socket_timeout=5) as node:
            try:
                node.shutdown(save=True)
            except redis.ConnectionError:
                pass  # the server closes the connection as it exits
        stopped = time.monotonic()
        self.processes[index].wait(timeout=10)
        node_dir, args = self.node_args[port]
        self.processes[index] = start_server(port, node_dir, *args)
        return time.monotonic() - stopped

    def id_of(self, port: int) -> str:
        with redis.Redis(port=port, decode_responses=True) as node:
            return str(node.cluster("MYID"))

    def reshard(self, slots: int, source: int, target: int, timeout: float = 60) -> None:
        """Move `slots` slots and their keys from one master to another, as an operator
        would (`--cluster reshard`): clients meanwhile get ASK and MOVED redirections."""
        subprocess.run(
            [cli_binary(), "--cluster", "reshard", f"127.0.0.1:{source}",
             "--cluster-from", self.id_of(source), "--cluster-to", self.id_of(target),
             "--cluster-slots", str(slots), "--cluster-yes", "--cluster-pipeline", "10"],
            check=True, capture_output=True, timeout=timeout,
        )

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def stop(self) -> None:
        for process in self.processes:
            stop_process(process)


def _cluster_is_ready(ports: list[int]) -> bool:
    for port in ports:
        try:
            with redis.Redis(port=port, socket_timeout=1) as node:
                info = node.cluster("INFO")
        except redis.RedisError:
            return False
        if info.get("cluster_state") != "ok" or int(info["cluster_known_nodes"]) != len(ports):
            return False
    return True


def start_cluster(workdir: Path, *, masters: int = 3, timeout: float = 20.0) -> LocalCluster:
    """Start `masters` cluster nodes, join them and wait until every node reports ok."""
    cluster = LocalCluster(ports=[free_port() for _ in range(masters)])
    try:
        for port in cluster.ports:
            node_dir = workdir / f"node-{port}"
            args = [
                "--cluster-enabled", "yes",
                "--cluster-config-file", str(node_dir / "nodes.conf"),
                # An explicit bus port: port + 10000 may be taken or out of range.
                "--cluster-port", str(free_port()),
                "--cluster-node-timeout", "2000",
            ]
            cluster.node_args[port] = (node_dir, args)
            cluster.processes.append(start_server(port, node_dir, *args))
        subprocess.run(
            [cli_binary(), "--cluster", "create",
             *(f"127.0.0.1:{port}" for port in cluster.ports),
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=timeout,
        )
        deadline = time.monotonic() + timeout
        while not _cluster_is_ready(cluster.ports):
            if time.monotonic() > deadline:
                raise RuntimeError(f"Redis Cluster on {cluster.ports} did not become ready.")
            time.sleep(0.1)
    except BaseException:
        cluster.stop()
        raise
    return cluster
