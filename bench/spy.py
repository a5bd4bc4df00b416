"""Where a gunicorn worker spends its CPU under wrk: py-spy on the real server.

`python -m bench.spy verify_otp --seconds 8` starts the benchmark's stack (one
gunicorn worker, 4 threads, users on BENCH_DATABASE_URL or SQLite), drives the
scenario with wrk, and samples the worker with py-spy, counting only the thread
that holds the GIL (Python at work: waits on sockets release it). It prints the
functions with the most samples, own and total, including gunicorn's share that
an in-process profile (bench.profile) cannot see. System calls made without the
GIL (sending and receiving) are not counted.
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from . import load
from .load import LoadPlan
from .profile import SCENARIOS
from .scenarios import Bench, Options
from .stack import BIN, Stack


def collapsed_counts(path: Path) -> tuple[collections.Counter[str], collections.Counter[str], int]:
    """Own and total samples per function from py-spy's collapsed-stack output."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():  # a note py-spy wrote among the stacks
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if not f.startswith("thread (")]
        samples += count
        if frames:
            own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    return own, total, samples


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.spy", description=__doc__)
    parser.add_argument("scenario", choices=SCENARIOS)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--requests", type=int, default=40_000)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--rate", type=int, default=997, help="py-spy samples per second")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-spy-") as tmp:
        stack = Stack(Path(tmp), gunicorn_workers=1, gunicorn_threads=4)
        try:
            stack.start(os.environ.get("BENCH_DATABASE_URL") or None)
            stack.start_web()
            bench = Bench(Options(out_dir=Path(tmp)), stack)
            requests = getattr(bench, f"{args.scenario}_requests")("spy", args.requests)
            base = stack.bare_url if args.scenario == "ceiling" else stack.base_url
            path = load.write_requests(Path(tmp) / "spy.requests", requests)
            load.run_wrk(base, path, LoadPlan(16, 2000, 2))  # warm-up
            (worker,) = stack.web_worker_processes("bare" if args.scenario == "ceiling"
                                                   else "web")
            out = Path(tmp) / "spy.txt"
            spy = subprocess.Popen([  # noqa: S603 - our own venv's py-spy, fixed arguments
                str(BIN / "py-spy"), "record", "--pid", str(worker.pid), "--rate",
                str(args.rate), "--duration", str(args.seconds), "--format", "raw",
                "--output", str(out), "--nonblocking", "--gil",
            ], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            result = load.run_wrk(base, path, LoadPlan(16, args.requests, args.seconds))
            spy.wait(timeout=args.seconds + 30)
            own, total, samples = collapsed_counts(out)
            print(f"{args.scenario}: {result.requests} requests, {samples} samples holding the GIL")
            for title, counts in (("own", own), ("total", total)):
                print(f"\n-- by {title} samples (% of all samples holding the GIL) --")
                for frame, count in counts.most_common(args.top):
                    print(f"{100 * count / samples:5.1f}%  {frame}")
        finally:
            stack.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
