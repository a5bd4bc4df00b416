"""Run every scenario on a fresh stack and write <date>.json, .md and .png."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import load, report
from .scenarios import Bench, Options
from .stack import ROOT, Stack

RESULTS_DIR = Path(__file__).with_name("results")
STEPS = ("ceiling", "request_otp", "verify_otp", "protected_get", "ceiling_again",
         "worker_throughput", "end_to_end", "costs")


def machine() -> dict[str, Any]:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607 - git from PATH
            cwd=ROOT, capture_output=True, text=True,
            check=False,
        ).stdout.strip() or "unknown"
    except OSError:
        commit = "unknown"
    return {"cpus": os.cpu_count(), "cpu_model": model, "python": platform.python_version(),
            "commit": commit}


def autogroup() -> str | None:
    """The scheduler group of this session (Linux autogroup), whose nice value, not the
    processes' own, sets its share of CPU against other sessions."""
    try:
        return Path("/proc/self/autogroup").read_text().strip()
    except OSError:
        return None


def run_bench(options: Options) -> tuple[dict[str, Any], dict[str, Path]]:
    """Start the stack, run scenarios 1-7, stop everything, write the three files."""
    started = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        stack = Stack(
            Path(options.workdir or tmp), options.gunicorn_workers, options.gunicorn_threads,
            options.worker_concurrency,
        )
        results: dict[str, Any] = {
            "meta": {
                "started_at": started.strftime("%Y-%m-%d %H:%M UTC"),
                **machine(),
                "loadavg_start": os.getloadavg(),
                # Negative when run under `nice -n -N` to stand out from other load.
                "niceness": os.nice(0),
                "autogroup": autogroup(),
                "gunicorn": {"workers": options.gunicorn_workers,
                             "threads": options.gunicorn_threads, "worker_class": "gthread"},
                "celery": {"pool": "prefork", "concurrency": options.worker_concurrency},
                "database": (options.database_url or "sqlite").split(":", 1)[0].split("+")[0],
                "load": {"driver": options.driver, "connections": options.connections,
                         "max_requests": options.max_requests, "max_seconds": options.max_seconds,
                         "warmup_requests": options.warmup_requests, "rounds": options.rounds},
            }
        }
        try:
            stack.start(options.database_url)
            bench = Bench(options, stack, results=results)
            stack.start_web()
            steps = [bench.ceiling, bench.request_otp, bench.verify_otp, bench.protected_get,
                     bench.ceiling_again, bench.worker_throughput, bench.end_to_end, bench.costs]
            if options.only:
                steps = [step for step in steps if step.__name__ in options.only]
            for step in steps:
                began = time.perf_counter()
                print(f"[bench] {step.__name__} ...", file=sys.stderr, flush=True)
                step()
                print(f"[bench] {step.__name__} done in {time.perf_counter() - began:.1f}s",
                      file=sys.stderr, flush=True)
        finally:
            stack.stop()
    results["meta"]["loadavg_end"] = os.getloadavg()
    results["targets"] = report.evaluate_targets(results)
    return results, write(results, options.out_dir, started)


def write(results: dict[str, Any], out_dir: Path, started: datetime) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = started.strftime("%Y-%m-%d-%H%M%S")
    paths = {
        "json": out_dir / f"{stem}.json",
        "markdown": out_dir / f"{stem}.md",
        "chart": out_dir / f"{stem}.png",
    }
    paths["json"].write_text(json.dumps(results, indent=2, default=str) + "\n")
    paths["markdown"].write_text(report.markdown(results))
    report.chart(results, paths["chart"])
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="results directory")
    parser.add_argument("--driver", choices=("wrk", "python"), default="wrk")
    parser.add_argument("--connections", type=int, default=Options.connections)
    parser.add_argument("--requests", type=int, default=Options.max_requests,
                        help="request budget per scenario")
    parser.add_argument("--seconds", type=int, default=Options.max_seconds,
                        help="time limit per scenario")
    parser.add_argument("--workers", type=int, default=Options.gunicorn_workers)
    parser.add_argument("--threads", type=int, default=Options.gunicorn_threads)
    parser.add_argument("--pending-codes", type=int, default=Options.pending_codes)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"),
                        help="SQLAlchemy URL of an empty database (default: SQLite in a temp dir)")
    parser.add_argument("--smoke", action="store_true", help="a few requests per scenario")
    parser.add_argument("--only", nargs="+", choices=STEPS, metavar="STEP",
                        help=f"run only these steps (of: {', '.join(STEPS)})")
    args = parser.parse_args(argv)
    if args.driver == "wrk" and not load.wrk_available():
        parser.error("wrk is not installed: `apt-get install wrk`, or use --driver python")
    if args.smoke:
        options = Options.smoke(
            args.out, driver=args.driver, database_url=args.database_url, only=args.only
        )
    else:
        options = Options(
            out_dir=args.out, driver=args.driver, connections=args.connections,
            max_requests=args.requests, max_seconds=args.seconds, gunicorn_workers=args.workers,
            gunicorn_threads=args.threads, pending_codes=args.pending_codes,
            database_url=args.database_url, only=args.only,
        )
    results, paths = run_bench(options)
    print(report.markdown(results))
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0
