"""Start a private master + replica + Sentinel set on loopback ports (tests, local trials).

The Sentinel declares the master down after `down_after_ms` and promotes the replica,
so a test can kill the master and watch the app follow the failover. Nothing is persisted.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis

from .redis_cluster import stop_process
from .redis_server import free_port, server_binary, start_server


@dataclass
class LocalSentinelSet:
    """A running master, replica and Sentinel watching them under `service_name`."""

    service_name: str
    master_port: int
    replica_port: int
    sentinel_port: int
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel_port}/{self.service_name}"

    def current_master_port(self) -> int:
        with redis.Redis(port=self.sentinel_port, socket_timeout=1) as sentinel:
            _host, port = sentinel.execute_command(
                "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service_name
            )
        return int(port)

    def stop(self) -> None:
        for process in self.processes.values():
            stop_process(process)


def _wait(condition: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"Timed out waiting for {condition}.")
        time.sleep(0.1)


def start_sentinel_set(
    workdir: Path,
    *,
    service_name: str = "passwordless",
    down_after_ms: int = 1000,
    failover_timeout_ms: int = 3000,
    timeout: float = 20.0,
) -> LocalSentinelSet:
    """Start master, replica (synced) and one Sentinel that knows both."""
    group = LocalSentinelSet(service_name, free_port(), free_port(), free_port())
    try:
        # No diskless-sync delay: the replica's first full sync starts at once.
        no_delay = ("--repl-diskless-sync-delay", "0")
        group.processes["master"] = start_server(group.master_port, workdir / "master", *no_delay)
        group.processes["replica"] = start_server(
            group.replica_port, workdir / "replica",
            "--replicaof", "127.0.0.1", str(group.master_port), *no_delay,
        )
        with redis.Redis(port=group.replica_port, socket_timeout=1) as replica:
            _wait(
                "the replica to sync",
                lambda: replica.info("replication").get("master_link_status") == "up",
                timeout,
            )
        sentinel_dir = workdir / "sentinel"
        sentinel_dir.mkdir(parents=True, exist_ok=True)
        conf = sentinel_dir / "sentinel.conf"
        conf.write_text(
            f"port {group.sentinel_port}\n"
            "bind 127.0.0.1\n"
            f"dir {sentinel_dir}\n"
            f"sentinel monitor {service_name} 127.0.0.1 {group.master_port} 1\n"
            f"sentinel down-after-milliseconds {service_name} {down_after_ms}\n"
            f"sentinel failover-timeout {service_name} {failover_timeout_ms}\n"
            f"sentinel parallel-syncs {service_name} 1\n"
            # Known up front, so the Sentinel need not wait for its periodic INFO to find it.
            f"sentinel known-replica {service_name} 127.0.0.1 {group.replica_port}\n"
        )
        sentinel_process = subprocess.Popen(
            [server_binary(), str(conf), "--sentinel"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )
        group.processes["sentinel"] = sentinel_process
        with redis.Redis(port=group.sentinel_port, socket_timeout=1) as sentinel:
            _wait(
                "the Sentinel to discover the replica",
                lambda: len(sentinel.execute_command("SENTINEL", "REPLICAS", service_name)) == 1,
                timeout,
            )
    except BaseException:
        group.stop()
        raise
    return group
