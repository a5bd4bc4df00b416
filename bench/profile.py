"""Profile one scenario's requests in-process: CPU per request, and where it goes.

`python -m bench.profile verify_otp --requests 2000` starts private Redis
servers and the SMTP sink, prepares the scenario's requests exactly as the
benchmark does, and calls the product's WSGI app with each one directly (no
network, no gunicorn, no test client; users on BENCH_DATABASE_URL, else SQLite),
then the bare `Flask()` app of the ceiling the same way. It prints both CPU times
per request, their difference (what the product adds on top of Flask and
Werkzeug), and cProfile's heaviest functions (wall time: waits on Redis and the
database show too). `python -m bench.spy` samples a live gunicorn worker instead.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from statistics import median
from typing import Any

from werkzeug.test import EnvironBuilder

from .bare import app as bare_app
from .load import Request
from .scenarios import Bench, Options
from .stack import Stack

ROUNDS = 5
SCENARIOS = ("ceiling", "request_otp", "verify_otp", "protected_get", "me")


def environ_of(request: Request) -> dict[str, Any]:
    builder = EnvironBuilder(
        path=request.path, method=request.method, data=request.body or None,
        headers=dict(request.headers), content_type="application/json" if request.body else None,
        environ_base={"REMOTE_ADDR": "127.0.0.1"},
    )
    try:
        return builder.get_environ()
    finally:
        builder.close()


def call(app: Callable[..., Any], environ: dict[str, Any]) -> str:
    """One request through the WSGI interface, its body consumed as a server would."""
    status: list[str] = []

    def start_response(line: str, _headers: Any, _exc: Any = None) -> None:
        status.append(line)

    body = app(environ, start_response)
    try:
        for _ in body:
            pass
    finally:
        if hasattr(body, "close"):
            body.close()
    return status[0]


def cpu_per_request(app: Callable[..., Any], environs: list[dict[str, Any]]) -> float:
    """Process CPU µs per request over `environs` (each used once)."""
    started = time.process_time()
    for environ in environs:
        line = call(app, environ)
        assert line[0] in "23", line
    return (time.process_time() - started) / len(environs) * 1e6


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("scenario", choices=SCENARIOS)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--top", type=int, default=40, help="functions listed by own time")
    parser.add_argument("--sort", default="tottime", help="pstats sort key (tottime, cumulative)")
    parser.add_argument("--dump", type=Path, help="also save the pstats data here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
        stack = Stack(Path(tmp), gunicorn_workers=0, gunicorn_threads=0)
        try:
            stack.start(os.environ.get("BENCH_DATABASE_URL") or None)
            bench = Bench(Options(out_dir=Path(tmp)), stack)
            make = getattr(bench, f"{args.scenario}_requests")
            app = bench.app

            def environs(label: str) -> list[dict[str, Any]]:
                requests = make(label, args.requests)
                return [environ_of(requests[i % len(requests)]) for i in range(args.requests)]

            cpu_per_request(app, environs("warmup")[:200])
            bare = [environ_of(Request("GET", "/bench/ping")) for _ in range(args.requests)]
            cpu_per_request(bare_app, bare[:200])
            # Interleaved rounds, medians: a drifting machine shifts both sides alike.
            product_runs, bare_runs = [], []
            for round_ in range(ROUNDS):
                product_runs.append(cpu_per_request(app, environs(f"timed{round_}")))
                bare_runs.append(cpu_per_request(bare_app, [dict(e) for e in bare]))
            product_us, bare_us = median(product_runs), median(bare_runs)
            profiled = environs("profiled")
            profiler = cProfile.Profile()
            profiler.enable()
            cpu_per_request(app, profiled)
            profiler.disable()
            if args.dump:
                profiler.dump_stats(args.dump)
            out = io.StringIO()
            stats = pstats.Stats(profiler, stream=out)
            stats.sort_stats(args.sort).print_stats(args.top)
            print(out.getvalue())
            print(f"{args.scenario}: {product_us:.0f} µs CPU per request in-process; "
                  f"bare Flask() view {bare_us:.0f} µs; the product adds "
                  f"{product_us - bare_us:.0f} µs ({product_us / bare_us:.2f}×, "
                  "without the server's own share)")
            # Written now, while the database still exists (not at exit, after it is gone).
            bench.app.extensions["email_signin"].audit.flush()
        finally:
            stack.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
