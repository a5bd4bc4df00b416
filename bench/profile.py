"""Profile one scenario's requests in-process with pyinstrument.

`python -m bench.profile verify_otp --requests 2000` starts private Redis
servers and the SMTP sink, prepares the scenario's requests exactly as the
benchmark does, replays them through the app's test client (no network, no
gunicorn) and prints where the time went. For a live gunicorn worker under
wrk, `py-spy record --pid <worker pid>` gives the same view with the server.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from pathlib import Path

from pyinstrument import Profiler

from .scenarios import Bench, Options
from .stack import Stack

SCENARIOS = ("ceiling", "request_otp", "verify_otp", "protected_get", "me")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("scenario", choices=SCENARIOS)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--html", type=Path, help="also write pyinstrument's HTML report here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
        stack = Stack(Path(tmp), gunicorn_workers=0, gunicorn_threads=0)
        try:
            stack.start()
            bench = Bench(Options(out_dir=Path(tmp)), stack)
            make = getattr(bench, f"{args.scenario}_requests")
            client = bench.app.test_client(use_cookies=False)
            for request in make("warmup", 50)[:50]:
                client.open(request.path, method=request.method, data=request.body or None,
                            headers=dict(request.headers), content_type="application/json")
            requests = make("run", args.requests)
            profiler = Profiler(interval=0.0005)
            with profiler:
                for i in range(args.requests):
                    request = requests[i % len(requests)]
                    response = client.open(
                        request.path, method=request.method, data=request.body or None,
                        headers=dict(request.headers), content_type="application/json",
                    )
                    assert response.status_code < 300, response.get_data(as_text=True)
            print(profiler.output_text(unicode=True, color=False, show_all=False))
            if args.html:
                args.html.write_text(profiler.output_html())
        finally:
            stack.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
