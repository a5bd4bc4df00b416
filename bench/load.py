"""Load generators: wrk in its own process, or a small threaded Python client.

Both replay the same prepared request lines (see lua/replay.lua for the
format), stop after a request budget or a time limit, whichever comes first,
and report the same figures, including the CPU the generator itself used, so
a reader can see that it was not the bottleneck. The Python client exists so
the suite's smoke test runs without wrk; measurements use wrk.
"""

from __future__ import annotations

import http.client
import itertools
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

LUA_SCRIPT = Path(__file__).with_name("lua") / "replay.lua"


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: str = ""
    headers: tuple[tuple[str, str], ...] = ()

    def line(self) -> str:
        fields = [self.method, self.path, self.body, *(f"{k}: {v}" for k, v in self.headers)]
        assert not any("\t" in f or "\n" in f for f in fields), "tabs/newlines break the format"
        return "\t".join(fields)


@dataclass
class LoadResult:
    """What one run of a generator measured."""

    driver: str
    requests: int
    duration_s: float
    requests_per_s: float
    latency_ms: dict[str, float]
    statuses: dict[str, int]
    socket_errors: int
    generator_cpu_s: float
    generator_cpu_percent: float = field(default=0.0)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class LoadPlan:
    """Bounds of one run: connections, request budget and time limit."""

    connections: int
    max_requests: int
    max_seconds: int


def write_requests(path: Path, requests: Sequence[Request]) -> Path:
    path.write_text("".join(r.line() + "\n" for r in requests))
    return path


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(base_url: str, requests_file: Path, plan: LoadPlan, threads: int = 1) -> LoadResult:
    """Run wrk (one thread by default: C and epoll, it needs a fraction of a core)."""
    command = [
        "wrk", f"-t{threads}", f"-c{max(plan.connections, threads)}",
        f"-d{plan.max_seconds}s", "--timeout", "10s", "-s", str(LUA_SCRIPT), base_url,
        "--", str(requests_file), str(plan.max_requests), str(threads),
    ]
    process = subprocess.Popen(  # noqa: S603 - wrk with arguments built here
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    _pid, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    stdout = process.stdout.read() if process.stdout else ""
    stderr = process.stderr.read() if process.stderr else ""
    lines = [line for line in stdout.splitlines() if line.startswith("BENCH_RESULT ")]
    if process.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({process.returncode}): {stderr.strip() or stdout[-500:]}")
    raw = json.loads(lines[-1].removeprefix("BENCH_RESULT "))
    duration = raw["duration_us"] / 1e6
    cpu = usage.ru_utime + usage.ru_stime
    return LoadResult(
        driver="wrk",
        requests=raw["requests"],
        duration_s=duration,
        requests_per_s=raw["requests"] / duration if duration else 0.0,
        latency_ms={
            "p50": raw["p50_us"] / 1000, "p90": raw["p90_us"] / 1000,
            "p99": raw["p99_us"] / 1000, "p99.9": raw["p99.9_us"] / 1000,
            "mean": raw["mean_us"] / 1000, "max": raw["max_us"] / 1000,
        },
        statuses={k: raw[k] for k in ("s2xx", "s3xx", "s4xx", "s5xx")},
        socket_errors=raw["socket_errors"],
        generator_cpu_s=cpu,
        generator_cpu_percent=100 * cpu / duration if duration else 0.0,
    )


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), round(p / 100 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


def latency_summary(latencies_s: Sequence[float]) -> dict[str, float]:
    values = sorted(x * 1000 for x in latencies_s)
    return {
        "p50": percentile(values, 50), "p90": percentile(values, 90),
        "p99": percentile(values, 99), "p99.9": percentile(values, 99.9),
        "mean": sum(values) / len(values) if values else 0.0,
        "max": values[-1] if values else 0.0,
    }


def run_python(base_url: str, requests: Sequence[Request], plan: LoadPlan) -> LoadResult:
    """The same replay with threads and keep-alive connections (smoke tests only)."""
    url = urlsplit(base_url)
    deadline = time.monotonic() + plan.max_seconds
    budget = min(plan.max_requests, len(requests)) if len(requests) > 1 else plan.max_requests
    tickets = itertools.count()
    latencies: list[float] = []
    statuses = {"s2xx": 0, "s3xx": 0, "s4xx": 0, "s5xx": 0}
    errors = [0]
    lock = threading.Lock()

    def client() -> None:
        connection = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=10)
        while time.monotonic() < deadline:
            ticket = next(tickets)
            if ticket >= budget:
                break
            req = requests[ticket % len(requests)]
            headers = dict(req.headers)
            if req.body:
                headers["Content-Type"] = "application/json"
            started = time.perf_counter()
            try:
                connection.request(req.method, req.path, body=req.body or None, headers=headers)
                response = connection.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                with lock:
                    errors[0] += 1
                connection.close()
                continue
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                statuses[f"s{response.status // 100}xx"] += 1
        connection.close()

    cpu_before, started = time.process_time(), time.perf_counter()
    workers = [threading.Thread(target=client) for _ in range(plan.connections)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    duration = time.perf_counter() - started
    cpu = time.process_time() - cpu_before
    return LoadResult(
        driver="python",
        requests=len(latencies),
        duration_s=duration,
        requests_per_s=len(latencies) / duration if duration else 0.0,
        latency_ms=latency_summary(latencies),
        statuses=statuses,
        socket_errors=errors[0],
        generator_cpu_s=cpu,
        generator_cpu_percent=100 * cpu / duration if duration else 0.0,
    )
