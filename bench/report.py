"""Targets, the Markdown table and the latency chart of one run's results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

HTTP_SCENARIOS = (
    "ceiling", "hooks", "request_otp", "verify_otp", "protected_get", "me", "ceiling_again",
)
# Server CPU per request, as a multiple of the bare Flask() view's, at most.
CPU_TARGETS = (
    ("hooks", 1.25), ("request_otp", 2.5), ("verify_otp", 5.0), ("protected_get", 1.6),
    ("me", 3.0),
)


def _scenario(results: dict[str, Any], key: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = results.get("scenarios", {}).get(key)
    return found


def _ceiling(results: dict[str, Any], figure: str) -> float | None:
    """Mean of the ceiling's runs (before and after scenarios 2-4): req/s or a percentile."""
    values = [
        float(s["load"]["requests_per_s"] if figure == "rps" else s["load"]["latency_ms"][figure])
        for key in ("ceiling", "ceiling_again")
        if (s := _scenario(results, key))
    ]
    return sum(values) / len(values) if values else None


def _vs_ceiling(results: dict[str, Any], key: str, figure: str) -> float | None:
    """The paired ratio (median over rounds, each against the ceiling slice just before),
    else the ratio to the mean of the separate ceiling runs."""
    scenario = _scenario(results, key)
    if not scenario:
        return None
    if "vs_ceiling" in scenario:
        return float(scenario["vs_ceiling"][figure])
    if figure == "cpu_per_request":
        return None
    if figure == "requests_per_s":
        ceiling = _ceiling(results, "rps")
        return scenario["load"]["requests_per_s"] / ceiling if ceiling else None
    ceiling = _ceiling(results, figure)
    return scenario["load"]["latency_ms"][figure] / ceiling if ceiling else None


def evaluate_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of the issue as measured in this run: value, limit, met or missed."""
    targets: list[dict[str, Any]] = []

    def add(name: str, value: float | None, limit: float, kind: str, unit: str = "") -> None:
        if value is None:
            return
        met = {"min": value >= limit, "max": value <= limit, "eq": abs(value - limit) < 0.05}[kind]
        targets.append(
            {"target": name, "measured": round(value, 3), "limit": limit, "kind": kind,
             "unit": unit, "met": met}
        )

    for key, limit in CPU_TARGETS:
        add(f"{key} server CPU per request ÷ bare Flask() view's",
            _vs_ceiling(results, key, "cpu_per_request"), limit, "max", "×")
    add("request_otp p99 ÷ ceiling p99", _vs_ceiling(results, "request_otp", "p99"), 3.0,
        "max", "×")
    redis_costs = results.get("costs", {}).get("redis_per_request", {})
    # State and broker are separate servers in the bench: each round trip counts.
    for key, limit, kind in (("request_otp", 2, "max"), ("verify_otp", 2, "max"),
                             ("protected_get", 1, "eq")):
        if key in redis_costs:
            add(f"{key} Redis round trips per request", redis_costs[key]["round_trips_total"],
                limit, kind)
    memory = results.get("costs", {}).get("memory")
    if memory:
        add("Redis bytes per pending code", memory["bytes_per_code"], 200, "max", "B")
    worker = _scenario(results, "worker")
    if worker:
        add("emails/s per worker process", worker["emails_per_s_per_process"], 200, "min")
    e2e = _scenario(results, "end_to_end")
    if e2e and e2e["light"]["sign_ins"]:
        add("time-to-inbox p50 at light load", e2e["light"]["time_to_inbox_ms"]["p50"], 50,
            "max", "ms")
    return targets


def _ms(value: float) -> str:
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def markdown(results: dict[str, Any]) -> str:
    """The tables the README's Performance section shows."""
    meta = results["meta"]
    lines = [
        f"Run {meta['started_at']} on {meta['cpus']} cores ({meta['cpu_model']}), "
        f"load average before {meta['loadavg_start'][0]:.2f}, after {meta['loadavg_end'][0]:.2f}"
        f"{'' if not meta.get('niceness') else ', niceness ' + str(meta['niceness'])}"
        f"{'' if not meta.get('autogroup') else ', scheduler group ' + meta['autogroup']}; "
        f"gunicorn {meta['gunicorn']['workers']} workers × {meta['gunicorn']['threads']} threads "
        f"(gthread), users in {meta.get('database', 'sqlite')}, "
        f"{meta['load']['driver']} {meta['load']['connections']} connections, "
        f"≤ {meta['load']['max_requests']} requests or {meta['load']['max_seconds']} s per "
        f"scenario in {meta['load'].get('rounds', 1)} rounds after a warm-up; "
        f"commit {meta['commit']}.",
        "",
        "| Scenario | Requests | Req/s | vs ceiling | Server CPU µs/req | CPU ÷ bare view "
        "| p50 ms | p90 ms | p99 ms | Non-2xx | Server CPU | Redis CPU | Generator CPU |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: |",
    ]
    for key in HTTP_SCENARIOS:
        scenario = _scenario(results, key)
        if not scenario:
            continue
        run, cpu = scenario["load"], scenario["server_cpu_percent"]
        lat = run["latency_ms"]
        bad = run["statuses"]["s3xx"] + run["statuses"]["s4xx"] + run["statuses"]["s5xx"] \
            + run["socket_errors"]
        ratio = _vs_ceiling(results, key, "requests_per_s")
        share = "(100%)" if key.startswith("ceiling") else f"{ratio:.0%}" if ratio else "–"
        cost = _vs_ceiling(results, key, "cpu_per_request")
        cost_text = "(1×)" if key.startswith("ceiling") else f"{cost:.2f}×" if cost else "–"
        server_cpu = cpu[scenario.get("server", "web")]
        lines.append(
            f"| {scenario['title']} | {run['requests']} | {run['requests_per_s']:.0f} | {share} "
            f"| {scenario.get('cpu_us_per_request', 0):.0f} | {cost_text} "
            f"| {_ms(lat['p50'])} | {_ms(lat['p90'])} | {_ms(lat['p99'])} | {bad} "
            f"| {server_cpu:.0f}% | {cpu['redis'] + cpu['broker']:.0f}% "
            f"| {run['generator_cpu_percent']:.0f}% |"
        )
    lines.append("")
    lines.append(
        f"Scenarios 1h-4 ran in {meta['load'].get('rounds', 1)} rounds, each right after a "
        "slice of the ceiling (a bare Flask() app under the same gunicorn settings) of the "
        "same size: \"vs ceiling\" and \"CPU ÷ bare view\" are the medians of those paired "
        "ratios, so drifting background load cancels out; latencies are the median of the "
        "rounds' percentiles. Server CPU µs/req is all of the serving gunicorn's CPU over the "
        "requests it answered. A slice where one gunicorn worker spent over 70 % of the "
        "workers' CPU (the accept race) is run again. CPU is in % of one core (200% = both "
        "cores); Redis CPU adds the state store and the broker."
    )
    e2e = _scenario(results, "end_to_end")
    if e2e:
        lines += [
            "",
            "| End-to-end sign-in | Users | Sign-ins | Sign-ins/s | Time to inbox p50 / p99 ms "
            "| Whole sign-in p50 / p99 ms | Failures | CPU web / worker / clients+sink |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for label in ("light", "heavy"):
            part = e2e[label]
            inbox, whole = part["time_to_inbox_ms"], part["sign_in_ms"]
            cpu = part.get("server_cpu_percent")
            cpu_text = (
                f"{cpu['web']:.0f}% / {cpu['worker']:.0f}% / {cpu['bench_process']:.0f}%"
                if cpu else "–"
            )
            lines.append(
                f"| {label} load | {part['users']} | {part['sign_ins']} | {part['sign_ins_per_s']} "
                f"| {_ms(inbox['p50'])} / {_ms(inbox['p99'])} | {_ms(whole['p50'])} / "
                f"{_ms(whole['p99'])} | {part['failures']} | {cpu_text} |"
            )
    worker = _scenario(results, "worker")
    if worker:
        lines += [
            "",
            f"Worker: {worker['delivered']} of {worker['emails']} queued emails accepted by the "
            f"SMTP sink at {worker['emails_per_s']} emails/s with {worker['worker_processes']} "
            f"worker process(es) ({worker['emails_per_s_per_process']} per process; worker CPU "
            f"{worker['server_cpu_percent']['worker']:.0f}%, SMTP sink "
            f"{worker['server_cpu_percent'].get('bench_process', 0):.0f}%).",
        ]
    costs = results.get("costs")
    if costs:
        lines += ["", "| Cost per request | State Redis round trips | Broker round trips "
                  "| Redis commands (incl. inside scripts) |", "| --- | ---: | ---: | --- |"]
        for key, figures in costs["redis_per_request"].items():
            commands = ", ".join(f"{n} {v:g}" for n, v in figures["state"]["by_command"].items())
            broker = ", ".join(f"{n} {v:g}" for n, v in figures["broker"]["by_command"].items())
            lines.append(
                f"| {key} | {figures['state']['round_trips']:.2f} | "
                f"{figures['broker']['round_trips']:.2f} | {commands}"
                f"{'; broker: ' + broker if broker else ''} |"
            )
        database = costs["database_per_step"]
        memory = costs["memory"]
        lines += [
            "",
            "Database queries: " + ", ".join(
                f"{step} {figures['queries']} ({' '.join(figures['statements'])})"
                for step, figures in database.items()
            ) + ".",
            f"Redis memory: {memory['bytes_per_code']} bytes per pending code "
            f"(used_memory delta over {memory['pending_codes']} codes, allocator "
            f"{memory['allocator']}; MEMORY USAGE of one key: "
            f"{memory['memory_usage_of_one_key']}).",
        ]
    lines += ["", "| Target | Measured | Limit | Result |", "| --- | ---: | ---: | --- |"]
    symbols = {"min": "≥", "max": "≤", "eq": "="}
    for target in results.get("targets", []):
        lines.append(
            f"| {target['target']} | {target['measured']:g}{target['unit']} "
            f"| {symbols[target['kind']]} {target['limit']:g}{target['unit']} "
            f"| {'met' if target['met'] else '**missed**'} |"
        )
    return "\n".join(lines) + "\n"


def chart(results: dict[str, Any], path: Path) -> Path:
    """Latency percentiles per scenario (left) and requests/s against the ceiling (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    keys = [k for k in HTTP_SCENARIOS if _scenario(results, k)]
    short = {"ceiling": "ping\n(ceiling)", "request_otp": "request-otp", "verify_otp": "verify-otp",
             "protected_get": "host view\n@jwt_required", "me": "/auth/me",
             "hooks": "product\nplain view",
             "ceiling_again": "ping again\n(ceiling)"}
    labels = [short[k] for k in keys]
    percentiles = ("p50", "p90", "p99")
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5), width_ratios=(3, 2))
    width = 0.8 / len(percentiles)
    for i, p in enumerate(percentiles):
        values = [results["scenarios"][k]["load"]["latency_ms"][p] for k in keys]
        positions = [x + (i - 1) * width for x in range(len(keys))]
        left.bar(positions, values, width, label=p)
    e2e = _scenario(results, "end_to_end")
    if e2e:
        for j, label in enumerate(("light", "heavy")):
            inbox = e2e[label]["time_to_inbox_ms"]
            x = len(keys) + j
            for i, p in enumerate(percentiles):
                left.bar(x + (i - 1) * width, inbox[p], width, color=f"C{i}")
            labels.append(f"to inbox\n{label} load")
    left.set_xticks(range(len(labels)), labels, fontsize=7)
    left.set_yscale("log")
    left.yaxis.set_major_formatter(ScalarFormatter())
    left.yaxis.set_minor_formatter(NullFormatter())
    left.set_ylabel("latency, ms (log scale)")
    left.set_title("Latency percentiles")
    left.legend()
    rates = [results["scenarios"][k]["load"]["requests_per_s"] for k in keys]
    right.bar(labels[: len(keys)], rates, color="C4")
    right.set_ylabel("requests/s")
    right.set_title("Throughput (same gunicorn config)")
    right.tick_params(axis="x", labelsize=7)
    figure.suptitle(f"{results['meta']['started_at']} · {results['meta']['cpus']} cores")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
