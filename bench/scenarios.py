"""The seven scenarios of the benchmark, run in order on one stack.

Scenarios 1-4 load the web tier alone (the worker is not running, and the
emails queued by scenario 2 are discarded afterwards), so their rates compare
the product's paths with the framework's ceiling on the same server. Then
scenario 6 measures the worker on a full queue, 5 the whole sign-in with the
worker running, and 7 the costs that need no load.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

import flask_migrate
import sqlalchemy as sa
from flask import Flask

from . import load
from .app import create_bench_app
from .load import LoadPlan, LoadResult, Request
from .stack import ROOT, Stack, code_in, cpu_seconds


@dataclass
class Options:
    """Sizes and bounds of a run; `smoke()` is the seconds-long variant for the suite."""

    out_dir: Path
    driver: str = "wrk"
    # Well above the server's 8 threads: gthread workers accept new connections in
    # bursts, and with few keep-alive connections one worker process can end up with
    # all of them (one core idle). 32 spread over both processes in practice; the
    # per-process CPU of every slice is recorded to show it.
    connections: int = 32
    max_requests: int = 20_000
    max_seconds: int = 10
    warmup_requests: int = 1_000
    warmup_seconds: int = 3
    gunicorn_workers: int = 2
    gunicorn_threads: int = 4
    worker_concurrency: int = 1
    worker_emails: int = 2_000
    e2e_light_signins: int = 50
    e2e_heavy_users: int = 16
    e2e_heavy_signins: int = 400
    pending_codes: int = 100_000
    rounds: int = 5
    cost_requests: int = 200
    database_url: str | None = None
    workdir: Path | None = None
    only: Sequence[str] | None = None

    @classmethod
    def smoke(cls, out_dir: Path, **overrides: Any) -> Options:
        settings: dict[str, Any] = {
            "driver": "python", "connections": 2, "max_requests": 20, "max_seconds": 10,
            "warmup_requests": 4, "warmup_seconds": 5, "gunicorn_workers": 1,
            "gunicorn_threads": 2, "worker_emails": 5, "e2e_light_signins": 2,
            "e2e_heavy_users": 2, "e2e_heavy_signins": 4, "pending_codes": 200, "rounds": 2,
            "cost_requests": 5,
        }
        settings.update(overrides)
        return cls(out_dir=out_dir, **settings)


@dataclass
class RedisSnapshot:
    """Counters of one Redis server: calls per command and read events."""

    commands: dict[str, int]
    reads: int
    used_memory: int

    @classmethod
    def take(cls, info: dict[str, Any]) -> RedisSnapshot:
        commands = {
            key.removeprefix("cmdstat_"): int(value["calls"])
            for key, value in info.items()
            if key.startswith("cmdstat_")
        }
        return cls(commands, int(info["total_reads_processed"]), int(info["used_memory"]))


@dataclass
class RedisCounts:
    """Commands and read events summed over the measured slices of a scenario."""

    commands: dict[str, int] = field(default_factory=dict)
    reads: int = 0

    def add(self, before: RedisSnapshot, after: RedisSnapshot) -> RedisCounts:
        """Add one slice; the INFO that took `after` is one read and one `info` call."""
        for name in set(before.commands) | set(after.commands):
            delta = after.commands.get(name, 0) - before.commands.get(name, 0)
            if delta and name != "info":
                self.commands[name] = self.commands.get(name, 0) + delta
        self.reads += after.reads - before.reads - 1
        return self

    def per_request(self, requests: int) -> dict[str, Any]:
        """Commands (including those run inside scripts) and client round trips per request.

        A round trip is a read event on the server (`total_reads_processed`): a
        pipeline or MULTI block sent at once is one, a script is one.
        """
        commands = {name: calls / requests for name, calls in sorted(self.commands.items())}
        return {
            "round_trips": self.reads / requests,
            "commands": round(sum(commands.values()), 3),
            "by_command": {name: round(value, 3) for name, value in commands.items()},
        }


@dataclass
class Slicer:
    """Hands out consecutive, never repeated parts of a request list (one line: itself)."""

    requests: list[Request]
    size: int
    used: int = 0

    def take(self) -> list[Request]:
        if len(self.requests) == 1:
            return self.requests
        part = self.requests[self.used:self.used + self.size]
        self.used += self.size
        assert part, "request pool exhausted"
        return part


def pooled(slices: Sequence[LoadResult]) -> LoadResult:
    """One result for several slices: sums and overall rate; latency percentiles are the
    median of the slices' own (wrk reports percentiles, not samples)."""
    duration = sum(s.duration_s for s in slices)
    requests = sum(s.requests for s in slices)
    cpu = sum(s.generator_cpu_s for s in slices)
    return LoadResult(
        driver=slices[0].driver,
        requests=requests,
        duration_s=duration,
        requests_per_s=requests / duration if duration else 0.0,
        latency_ms={
            name: median([s.latency_ms[name] for s in slices]) for name in slices[0].latency_ms
        },
        statuses={
            name: sum(s.statuses[name] for s in slices) for name in slices[0].statuses
        },
        socket_errors=sum(s.socket_errors for s in slices),
        generator_cpu_s=cpu,
        generator_cpu_percent=100 * cpu / duration if duration else 0.0,
    )


@dataclass
class Bench:
    """One run: the stack, an in-process app on the same servers for setup, the results."""

    options: Options
    stack: Stack
    app: Flask = field(init=False)
    results: dict[str, Any] = field(default_factory=dict)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    _access_cookie: str | None = None

    def __post_init__(self) -> None:
        from config import ProductionConfig

        # The stack's settings are environment variables; these two feed config keys.
        settings = {
            **self.stack.settings,
            "OTP_REDIS_URL": self.stack.settings["REDIS_URL"],
            "OTP_CELERY_BROKER_URL": self.stack.settings["CELERY_BROKER_URL"],
        }
        self.app = create_bench_app(type("BenchConfig", (ProductionConfig,), settings))
        with self.app.app_context():
            flask_migrate.upgrade(directory=str(ROOT / "migrations"))

    # ---- helpers -------------------------------------------------------------------

    def emails(self, label: str, count: int) -> list[str]:
        return [f"{label}-{self.run_id}-{i}@bench.example.com" for i in range(count)]

    def issue_codes(
        self, emails: Sequence[str], *, cooldown: int | None = None
    ) -> list[tuple[str, str, int]]:
        """Pending codes issued through the product's own store: (email, code, expires_at).

        `cooldown=0` lets setup issue a second code for an email at once.
        """
        from flask_email_signin import code_store as store
        from flask_email_signin.codes import CODE_PURPOSE, email_tag, generate_code, secret_digest

        config, issued = self.app.config, []
        with self.app.app_context():
            for email in emails:
                code = generate_code(config["OTP_LENGTH"])
                outcome = store.issue_code(
                    email_tag(email), secret_digest(CODE_PURPOSE, email, code),
                    ttl=config["OTP_TTL_SECONDS"],
                    cooldown=(
                        config["OTP_RESEND_COOLDOWN_SECONDS"] if cooldown is None else cooldown
                    ),
                    hourly_limit=config["OTP_HOURLY_SEND_LIMIT"],
                )
                assert outcome.status == "ok", outcome
                issued.append((email, code, outcome.value))
        return issued

    def snapshot(self, name: str) -> RedisSnapshot:
        return RedisSnapshot.take(self.stack.redis(name).info("all"))

    def plan(self, requests: int, seconds: int) -> LoadPlan:
        return LoadPlan(self.options.connections, requests, seconds)

    def drive(
        self, requests: Sequence[Request], plan: LoadPlan, label: str, server: str = "web"
    ) -> LoadResult:
        """Send `requests` to the product ("web") or to the bare ceiling app ("bare")."""
        base_url = self.stack.bare_url if server == "bare" else self.stack.base_url
        if self.options.driver == "wrk":
            path = load.write_requests(self.stack.workdir / f"{label}.requests", requests)
            return load.run_wrk(base_url, path, plan)
        return load.run_python(base_url, requests, plan)

    @contextmanager
    def measured(self, server: str = "web") -> Iterator[dict[str, Any]]:
        """CPU of each server process group and the load average around a run."""
        figures: dict[str, Any] = {"loadavg_before": os.getloadavg()}
        workers = self.stack.web_worker_processes(server)
        per_worker_before = [cpu_seconds([w]) for w in workers]
        cpu_before, started = self.stack.cpu_snapshot(), time.perf_counter()
        yield figures
        elapsed = time.perf_counter() - started
        cpu_after = self.stack.cpu_snapshot()
        figures["server_cpu_percent"] = {
            name: round(100 * (cpu_after[name] - cpu_before[name]) / elapsed, 1)
            for name in cpu_before
        }
        figures["web_worker_cpu_percent"] = [
            round(100 * (cpu_seconds([w]) - before) / elapsed, 1)
            for w, before in zip(workers, per_worker_before, strict=True)
        ]
        figures["elapsed_s"] = elapsed
        figures["loadavg_after"] = os.getloadavg()

    def http_scenario(
        self, key: str, title: str, make_requests: Callable[[str, int], list[Request]],
        *, paired: bool = True, server: str = "web",
    ) -> dict[str, Any]:
        """Warm up, then `rounds` bounded slices, each right after a ceiling slice.

        Other load on the machine drifts; comparing each slice with a ceiling slice
        measured seconds before it keeps that drift out of the ratios (the median of
        the rounds is reported). Redis counters and CPU cover the scenario's slices only.
        """
        opts = self.options
        rounds = max(1, opts.rounds)
        warmup = self.drive(
            make_requests("warmup", opts.warmup_requests + 64),
            self.plan(opts.warmup_requests, opts.warmup_seconds), f"{key}-warmup", server,
        )
        budget, seconds = max(1, opts.max_requests // rounds), max(1, opts.max_seconds // rounds)
        # Room for every round to be run again once (see `balanced`).
        pool = Slicer(make_requests("run", 2 * (opts.max_requests + 64 * rounds)), budget + 64)
        slices: list[LoadResult] = []
        ceilings: list[LoadResult] = []
        cpu_per_request: list[float] = []  # µs of server CPU per answered request, per round
        ceiling_cpu_per_request: list[float] = []
        cpu: dict[str, float] = {}
        web_split: list[list[float]] = []
        attempts: list[int] = []
        elapsed = 0.0
        loadavg_before = os.getloadavg()
        for r in range(rounds):
            if paired:
                ceiling, ceiling_figures = self.balanced(
                    lambda: self.ceiling_requests("pair", 1), budget, seconds, f"{key}-ceil-{r}",
                    "bare",
                )
                ceilings.append(ceiling)
                ceiling_cpu_per_request.append(cpu_us_per_request(ceiling, ceiling_figures, "bare"))
            result, figures = self.balanced(pool.take, budget, seconds, f"{key}-{r}", server)
            slices.append(result)
            cpu_per_request.append(cpu_us_per_request(result, figures, server))
            web_split.append(figures["web_worker_cpu_percent"])
            attempts.append(figures["attempts"])
            for name, percent in figures["server_cpu_percent"].items():
                cpu[name] = cpu.get(name, 0.0) + percent * figures["elapsed_s"] / 100
            elapsed += figures["elapsed_s"]
        state, broker = self.cost_run(make_requests)
        scenario: dict[str, Any] = {
            "title": title,
            "load": pooled(slices).as_dict(),
            "rounds": [s.as_dict() for s in slices],
            "warmup_requests": warmup.requests,
            "loadavg_before": loadavg_before,
            "loadavg_after": os.getloadavg(),
            "server_cpu_percent": {
                name: round(100 * seconds_used / elapsed, 1) for name, seconds_used in cpu.items()
            },
            "web_worker_cpu_percent_per_round": web_split,
            "attempts_per_round": attempts,
            "redis_per_request": state,
            "broker_per_request": broker,
            "server": server,
            "cpu_us_per_request": round(median(cpu_per_request), 1),
            "cpu_us_per_request_per_round": [round(c, 1) for c in cpu_per_request],
        }
        if paired:
            scenario["paired_ceiling"] = [c.as_dict() for c in ceilings]
            pairs = list(zip(slices, ceilings, strict=True))
            scenario["vs_ceiling"] = {
                "requests_per_s": median(x.requests_per_s / c.requests_per_s for x, c in pairs),
                "p99": median(x.latency_ms["p99"] / c.latency_ms["p99"] for x, c in pairs),
                # Server CPU per request over the bare view's, each round against its own
                # ceiling slice: the cost ratio, whatever the machine's other load did.
                "cpu_per_request": median([
                    x / c
                    for x, c in zip(cpu_per_request, ceiling_cpu_per_request, strict=True)
                    if c > 0  # a slice too short for the clock's 10 ms CPU ticks
                ] or [0.0]),
            }
            scenario["ceiling_cpu_us_per_request"] = round(median(ceiling_cpu_per_request), 1)
        self.results.setdefault("scenarios", {})[key] = scenario
        return scenario

    def balanced(
        self, requests: Callable[[], list[Request]], budget: int, seconds: int, label: str,
        server: str = "web",
    ) -> tuple[LoadResult, dict[str, Any]]:
        """One slice, run again (up to 4 times) while one gunicorn worker did most of the work.

        gthread workers accept new connections in bursts, so now and then one process
        takes (nearly) every connection of a run and the other core idles; such a slice
        measures the accept race, not the app. A slice where one worker spent more than
        70 % of the workers' CPU is discarded and run again; attempts are recorded.
        """
        attempt = 0
        while True:
            attempt += 1
            with self.measured(server) as figures:
                result = self.drive(
                    requests(), self.plan(budget, seconds), f"{label}-{attempt}", server
                )
            split = figures["web_worker_cpu_percent"]
            if attempt >= 5 or len(split) < 2 or max(split) <= 0.7 * sum(split):
                figures["attempts"] = attempt
                figures["balanced"] = len(split) < 2 or max(split) <= 0.7 * sum(split)
                return result, figures

    def cost_run(
        self, make_requests: Callable[[str, int], list[Request]]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Redis cost per request on both servers, from requests sent one at a time.

        Under load, requests still in flight when a slice stops reach Redis without
        being counted; here each request is answered before the next is sent, so the
        counts divide exactly.
        """
        requests = make_requests("cost", self.options.cost_requests)
        time.sleep(0.5)  # let the last slice's in-flight requests finish
        state_before, broker_before = self.snapshot("redis"), self.snapshot("broker")
        result = load.run_python(
            self.stack.base_url, requests, LoadPlan(1, self.options.cost_requests, 60)
        )
        state = RedisCounts().add(state_before, self.snapshot("redis"))
        broker = RedisCounts().add(broker_before, self.snapshot("broker"))
        answered = max(result.requests, 1)
        return state.per_request(answered), broker.per_request(answered)

    # ---- scenarios 1-4: the web tier -------------------------------------------

    def ceiling_requests(self, _label: str, _count: int) -> list[Request]:
        return [Request("GET", "/bench/ping")]

    def request_otp_requests(self, label: str, count: int) -> list[Request]:
        """Distinct addresses: each request issues and queues a real code."""
        return [
            Request("POST", "/auth/request-otp", json.dumps({"email": email}))
            for email in self.emails(f"req-{label}", count)
        ]

    def verify_otp_requests(self, label: str, count: int) -> list[Request]:
        """Valid codes issued through the product's store, each sent once."""
        return [
            Request("POST", "/auth/verify-otp", json.dumps({"email": email, "otp": code}))
            for email, code, _ in self.issue_codes(self.emails(f"ver-{label}", count))
        ]

    def access_cookie(self) -> str:
        """One signed-in session's access cookie, sent again and again."""
        if self._access_cookie is None:
            name = self.app.config["JWT_ACCESS_COOKIE_NAME"]
            self._access_cookie = f"{name}={self.sign_in_for_token()}"
        return self._access_cookie

    def protected_get_requests(self, _label: str, _count: int) -> list[Request]:
        return [Request("GET", "/bench/protected", headers=(("Cookie", self.access_cookie()),))]

    def me_requests(self, _label: str, _count: int) -> list[Request]:
        return [Request("GET", "/auth/me", headers=(("Cookie", self.access_cookie()),))]

    def sign_in_for_token(self) -> str:
        """A real sign-in with a code from the store; returns the access token."""
        ((email, code, _),) = self.issue_codes(self.emails("me", 1))
        if self.stack.http_port:
            status, body = post_json(
                self.stack.base_url, "/auth/verify-otp", {"email": email, "otp": code}
            )
        else:
            response = self.app.test_client().post(
                "/auth/verify-otp", json={"email": email, "otp": code}
            )
            status, body = response.status_code, response.get_json()
        assert status == 200, body
        return str(body["access_token"])

    def ceiling(self) -> dict[str, Any]:
        """1: the bare Flask() view; 1h: a plain view of the product app (its app-wide hooks)."""
        scenario = self.http_scenario(
            "ceiling", "1. Ceiling: bare Flask() GET /bench/ping", self.ceiling_requests,
            paired=False, server="bare",
        )
        self.http_scenario(
            "hooks", "1h. Product app, a plain view: GET /bench/ping", self.ceiling_requests
        )
        return scenario

    def ceiling_again(self) -> dict[str, Any]:
        """The ceiling once more after scenarios 2-4: the gap between the two runs shows
        how much the machine's other load moved meanwhile."""
        return self.http_scenario(
            "ceiling_again", "1'. Ceiling again: bare Flask() GET /bench/ping",
            self.ceiling_requests, paired=False, server="bare",
        )

    def request_otp(self) -> dict[str, Any]:
        scenario = self.http_scenario(
            "request_otp", "2. POST /auth/request-otp", self.request_otp_requests
        )
        # No worker ran: drop the queued emails so they do not skew scenarios 5 and 6.
        self.stack.redis("broker").delete("celery")
        return scenario

    def verify_otp(self) -> dict[str, Any]:
        return self.http_scenario(
            "verify_otp", "3. POST /auth/verify-otp", self.verify_otp_requests
        )

    def protected_get(self) -> dict[str, Any]:
        """4a: a host view with @jwt_required(); 4b: /auth/me, which also reads the user row."""
        scenario = self.http_scenario(
            "protected_get", "4a. GET host view, @jwt_required() (cookie)",
            self.protected_get_requests,
        )
        self.http_scenario("me", "4b. GET /auth/me (cookie)", self.me_requests)
        return scenario

    # ---- scenario 6: worker throughput ----------------------------------------

    def worker_throughput(self) -> dict[str, Any]:
        """N emails queued through the product, then one worker drains them into the sink."""
        count = self.options.worker_emails
        client = self.app.test_client()
        for email in self.emails("worker", count):
            response = client.post("/auth/request-otp", json={"email": email})
            assert response.status_code == 202, response.get_json()
        already = self.stack.sink.count
        with self.measured() as figures:
            self.stack.start_worker()
            delivered = self.stack.sink.wait_for_count(already + count, timeout=max(60, count / 20))
        times = self.stack.sink.arrival_times()[already:]
        span = times[-1] - times[0] if len(times) > 1 else 0.0
        rate = (len(times) - 1) / span if span else 0.0
        scenario = {
            "title": "6. Worker: queued emails into the SMTP sink",
            "emails": count,
            "delivered": len(times),
            "all_delivered": delivered,
            "worker_processes": self.options.worker_concurrency,
            "emails_per_s": round(rate, 1),
            "emails_per_s_per_process": round(rate / self.options.worker_concurrency, 1),
            **figures,
        }
        self.results.setdefault("scenarios", {})["worker"] = scenario
        return scenario

    # ---- scenario 5: end to end -------------------------------------------------

    def end_to_end(self) -> dict[str, Any]:
        """request -> email in the sink -> code parsed -> verify, at light and heavy load."""
        opts = self.options
        self.sign_in_loop("e2e-warmup", users=1, total=3, pause=0.0)
        light = self.sign_in_loop("e2e-light", users=1, total=opts.e2e_light_signins, pause=0.05)
        with self.measured() as figures:
            heavy = self.sign_in_loop(
                "e2e-heavy", users=opts.e2e_heavy_users, total=opts.e2e_heavy_signins, pause=0.0
            )
        scenario = {
            "title": "5. End-to-end sign-in",
            "light": light,
            "heavy": {**heavy, **figures},
        }
        self.results.setdefault("scenarios", {})["end_to_end"] = scenario
        return scenario

    def sign_in_loop(self, label: str, *, users: int, total: int, pause: float) -> dict[str, Any]:
        base, length = self.stack.base_url, self.app.config["OTP_LENGTH"]
        emails = iter(self.emails(label, total))
        lock = threading.Lock()
        to_inbox: list[float] = []
        whole: list[float] = []
        failures: list[str] = []
        deadline = time.monotonic() + max(self.options.max_seconds * 3, 30)

        def user() -> None:
            while time.monotonic() < deadline:
                with lock:
                    email = next(emails, None)
                if email is None:
                    return
                started = time.time()
                try:
                    status, body = post_json(base, "/auth/request-otp", {"email": email})
                    if status != 202:
                        raise RuntimeError(f"request-otp {status}: {body}")
                    arrival = self.stack.sink.wait_for(email, timeout=30)
                    code = code_in(arrival.raw, length)
                    status, body = post_json(
                        base, "/auth/verify-otp", {"email": email, "otp": code}
                    )
                    if status != 200:
                        raise RuntimeError(f"verify-otp {status}: {body}")
                except (RuntimeError, TimeoutError, OSError, ValueError) as error:
                    with lock:
                        failures.append(str(error)[:200])
                    continue
                finished = time.time()
                with lock:
                    to_inbox.append(arrival.at - started)
                    whole.append(finished - started)
                if pause:
                    time.sleep(pause)

        started = time.perf_counter()
        threads = [threading.Thread(target=user) for _ in range(users)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        return {
            "users": users,
            "sign_ins": len(whole),
            "failures": len(failures),
            "failure_samples": failures[:3],
            "sign_ins_per_s": round(len(whole) / elapsed, 1) if elapsed else 0.0,
            "time_to_inbox_ms": load.latency_summary(to_inbox),
            "sign_in_ms": load.latency_summary(whole),
        }

    # ---- scenario 7: costs that need no load ------------------------------------

    def database_queries(self) -> dict[str, Any]:
        """SQL statements per step, counted with SQLAlchemy's cursor events."""
        from app.extensions import db

        statements: list[str] = []

        def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            statements.append(statement.split(None, 1)[0].upper())

        client = self.app.test_client()
        ((email, code, _),) = self.issue_codes(self.emails("db-new", 1))
        figures: dict[str, Any] = {}
        with self.app.app_context():
            engine = db.engine
        sa.event.listen(engine, "before_cursor_execute", count)
        try:
            steps: list[tuple[str, Callable[[], Any]]] = [
                ("request_otp", lambda: client.post(
                    "/auth/request-otp", json={"email": self.emails("db-req", 1)[0]})),
                ("verify_otp_new_user", lambda: client.post(
                    "/auth/verify-otp", json={"email": email, "otp": code})),
                ("protected_get", lambda: client.get("/bench/protected")),
                ("me", lambda: client.get("/auth/me")),
            ]
            for name, step in steps:
                statements.clear()
                response = step()
                assert response.status_code < 300, (name, response.get_json())
                figures[name] = {"queries": len(statements), "statements": list(statements)}
            # A returning user: sign the same email in again with a second code.
            ((_, code3, _),) = self.issue_codes([email], cooldown=0)
            statements.clear()
            response = client.post("/auth/verify-otp", json={"email": email, "otp": code3})
            assert response.status_code == 200, response.get_json()
            figures["verify_otp_returning_user"] = {
                "queries": len(statements), "statements": list(statements)
            }
        finally:
            sa.event.remove(engine, "before_cursor_execute", count)
        return figures

    def memory_per_code(self) -> dict[str, Any]:
        """used_memory delta over N pending codes issued through the product's store."""
        count = self.options.pending_codes
        client = self.stack.redis("redis")
        before = int(client.info("memory")["used_memory"])
        issued = self.issue_codes(self.emails("mem", count))
        after = int(client.info("memory")["used_memory"])
        from flask_email_signin.code_store import code_key
        from flask_email_signin.codes import email_tag

        with self.app.app_context():
            sample_key = code_key(email_tag(issued[0][0]))
        sample = client.memory_usage(sample_key, samples=0)
        return {
            "pending_codes": count,
            "bytes_per_code": round((after - before) / count, 1),
            "memory_usage_of_one_key": sample,
            "allocator": client.info("memory").get("mem_allocator", "?"),
        }

    def costs(self) -> dict[str, Any]:
        scenarios = self.results.get("scenarios", {})
        redis_costs = {
            key: {
                "state": scenarios[key]["redis_per_request"],
                "broker": scenarios[key]["broker_per_request"],
                "round_trips_total": round(
                    scenarios[key]["redis_per_request"]["round_trips"]
                    + scenarios[key]["broker_per_request"]["round_trips"], 3
                ),
            }
            for key in ("request_otp", "verify_otp", "protected_get", "me")
            if key in scenarios
        }
        costs = {
            "redis_per_request": redis_costs,
            "database_per_step": self.database_queries(),
            "memory": self.memory_per_code(),
        }
        self.results["costs"] = costs
        return costs


def cpu_us_per_request(result: LoadResult, figures: dict[str, Any], server: str) -> float:
    """Microseconds of the server's CPU (all its processes) per answered request."""
    seconds = figures["server_cpu_percent"][server] * figures["elapsed_s"] / 100
    return 1e6 * seconds / max(result.requests, 1)


def post_json(base_url: str, path: str, payload: dict[str, Any]) -> tuple[int, Any]:
    host, port = base_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request(
            "POST", path, body=json.dumps(payload), headers={"Content-Type": "application/json"}
        )
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    try:
        return response.status, json.loads(body)
    except ValueError:
        return response.status, body.decode(errors="replace")
