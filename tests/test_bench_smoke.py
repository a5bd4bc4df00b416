"""The benchmark's own code, run end to end with a few requests per scenario.

No timing is asserted (speed is measured by `make bench`, never in tests);
this only proves that every scenario still runs against the real stack and
that the JSON, Markdown and chart are written. The threaded Python client
stands in for wrk, so the suite does not depend on it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bench import profile, spy
from bench.report import HTTP_SCENARIOS
from bench.run import run_bench
from bench.scenarios import Options


def test_every_scenario_runs_and_the_report_is_written(tmp_path: Path) -> None:
    options = Options.smoke(tmp_path / "results", workdir=tmp_path / "stack")
    results, paths = run_bench(options)

    scenarios = results["scenarios"]
    assert set(scenarios) == {*HTTP_SCENARIOS, "worker", "end_to_end"}
    for key in HTTP_SCENARIOS:
        run = scenarios[key]["load"]
        assert run["requests"] == options.max_requests, (key, run)
        assert run["statuses"]["s2xx"] == run["requests"], (key, run["statuses"])
        assert run["socket_errors"] == 0
    worker = scenarios["worker"]
    assert worker["all_delivered"] and worker["delivered"] == options.worker_emails
    e2e = scenarios["end_to_end"]
    assert e2e["light"]["sign_ins"] == options.e2e_light_signins, e2e["light"]
    assert e2e["heavy"]["sign_ins"] == options.e2e_heavy_signins, e2e["heavy"]

    costs = results["costs"]
    for key in ("request_otp", "verify_otp", "protected_get"):
        assert costs["redis_per_request"][key]["round_trips_total"] > 0
    assert costs["redis_per_request"]["request_otp"]["broker"]["round_trips"] > 0
    assert costs["database_per_step"]["verify_otp_new_user"]["queries"] > 0
    assert costs["memory"]["pending_codes"] == options.pending_codes
    assert costs["memory"]["bytes_per_code"] > 0
    assert len(results["targets"]) == 12
    for key in ("hooks", "request_otp", "verify_otp", "protected_get", "me"):
        # Smoke slices are too short for CPU clock ticks: the figures exist, sizes vary.
        assert scenarios[key]["vs_ceiling"]["cpu_per_request"] >= 0, key
        assert scenarios[key]["cpu_us_per_request"] >= 0, key
    assert scenarios["ceiling"]["server"] == "bare"
    assert all(isinstance(target["met"], bool) for target in results["targets"])

    assert json.loads(paths["json"].read_text())["targets"] == results["targets"]
    table = paths["markdown"].read_text()
    assert "| Target | Measured | Limit | Result |" in table
    assert "2. POST /auth/request-otp" in table
    assert paths["chart"].read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_the_ping_route_exists_only_in_the_bench_app(app: object) -> None:
    client = app.test_client()  # type: ignore[attr-defined]
    assert client.get("/bench/ping").status_code == 404


def test_the_in_process_profile_reports_cpu_beside_the_bare_view(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert profile.main(["protected_get", "--requests", "40", "--top", "5"]) == 0
    printed = capsys.readouterr().out
    assert "function calls" in printed  # cProfile's listing
    figures = re.search(r"protected_get: (\d+) µs CPU per request in-process; "
                        r"bare Flask\(\) view (\d+) µs", printed)
    assert figures is not None, printed[-500:]


def test_the_live_profile_counts_own_and_total_samples(tmp_path: Path) -> None:
    raw = tmp_path / "spy.txt"
    raw.write_text(
        "thread (0x1);handle (gunicorn);app (flask);decode (jwt) 3\n"
        "thread (0x1);handle (gunicorn);app (flask) 1\n"
        "thread (0x2);handle (gunicorn);decode (jwt);decode (jwt) 2\n"
        "Error: failed to sample a thread's context.\n"
    )
    own, total, samples = spy.collapsed_counts(raw)
    assert samples == 6
    assert own == {"decode (jwt)": 5, "app (flask)": 1}
    # A frame counts once per sample however deep it recurs; thread markers are dropped.
    assert total["decode (jwt)"] == 5 and total["handle (gunicorn)"] == 6
    assert not any(frame.startswith("thread") for frame in total)
