"""The bench's results as JSON, a markdown report and a PNG plot (bench/plot.py); and the summary that checks issue
19's targets. py-spy's profiles are summarised in bench/profile_summary.py."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from bench.plot import plot

__all__ = ["machine_busy", "markdown", "summarise", "write"]

#: Issue 19's targets, made absolute from its baseline run on the 2-core bench machine (b4c1e25: 536 req/s at
#: most, 2.23 ms of authz + extproc CPU per request there; docs/performance.md). On another machine read the A/B,
#: not these lines.
TARGETS = {
    "python_cpu_ms": 2.23 / 3,  # authz + extproc CPU per request at the maximum throughput: a third of the baseline's
    "throughput_rps": 2 * 536.0,  # with < 0.1% errors: twice the baseline's
    "throughput_error_rate": 0.001,
    "litellm_ratio": 8.0,  # over LiteLLM's best configuration in the same run
    "added_p50_ms": 2.0,  # over bare Envoy, at 100 req/s offered
    "added_ttfb_p50_ms": 5.0,  # 50 streams
    "chunk_lag_p50_ms": 1.0,  # 50 streams
}
SUSTAINED_ERROR_RATE = 0.01


def _by(records: list[dict[str, Any]], target: str) -> list[dict[str, Any]]:
    return [r for r in records if r["target"] == target]


def _best(records: list[dict[str, Any]], target: str, max_error_rate: float) -> dict[str, Any] | None:
    ok = [r for r in _by(records, target) if r["result"]["error_rate"] < max_error_rate]
    return max(ok, key=lambda r: r["result"]["achieved_rps"], default=None)


def _fixed(results: dict[str, Any], target: str, rate: float) -> dict[str, Any] | None:
    return next((r for r in results["fixed_rate"] if r["target"] == target and r["result"]["offered_rps"] == rate),
                None)


def _python_ms(record: dict[str, Any], names: tuple[str, ...] = ("authz", "extproc")) -> float:
    per = record["cpu_ms_per_request"]
    return sum(per.get(name) or 0.0 for name in names)


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not b or math.isnan(a) or math.isnan(b):
        return None
    return a / b


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    """The numbers the report leads with: Lime against bare Envoy (and LiteLLM), and issue 19's targets."""
    targets = list(results["meta"]["targets"])
    rates = sorted({r["result"]["offered_rps"] for r in results["fixed_rate"]})
    summary: dict[str, Any] = {"added_latency": [], "max_throughput": {}, "streams": [], "checks": []}
    for rate in rates:
        lime, envoy = _fixed(results, "lime", rate), _fixed(results, "envoy", rate)
        if lime is None or envoy is None:
            continue
        row = {"rate": rate}
        for p in ("p50", "p90", "p99"):
            row[f"added_{p}_ms"] = lime["result"]["latency"][p] - envoy["result"]["latency"][p]
            row[f"ratio_{p}"] = _ratio(lime["result"]["latency"][p], envoy["result"]["latency"][p])
        row["python_cpu_ms"] = _python_ms(lime)
        row["lime_envoy_cpu_ms"] = lime["cpu_ms_per_request"].get("envoy")
        row["bare_envoy_cpu_ms"] = envoy["cpu_ms_per_request"].get("envoy")
        summary["added_latency"].append(row)
    for target in targets:
        best = _best(results["max_throughput"], target, SUSTAINED_ERROR_RATE)
        summary["max_throughput"][target] = None if best is None else {
            "rps": best["result"]["achieved_rps"], "connections": best["result"]["connections"],
            "error_rate": best["result"]["error_rate"], "p50_ms": best["result"]["latency"]["p50"],
            "p99_ms": best["result"]["latency"]["p99"], "cpu_ms_per_request": best["cpu_ms_per_request"]}
    best = summary["max_throughput"]
    rps = {t: (best[t] or {}).get("rps") for t in targets}
    summary["throughput_ratios"] = {
        "lime_over_envoy": _ratio(rps.get("lime"), rps.get("envoy")),
        # Against LiteLLM's best configuration in the run (one worker, or one per core).
        "lime_over_litellm": _ratio(rps.get("lime"), max((v for t, v in rps.items() if t.startswith("litellm") and v),
                                                         default=None)),
        "mock_over_lime": _ratio(rps.get("mock"), rps.get("lime")),
    }
    lime_max = best.get("lime")
    if lime_max is not None:
        record = next(r for r in results["max_throughput"] if r["target"] == "lime"
                      and r["result"]["achieved_rps"] == lime_max["rps"])
        summary["mock_share_at_lime_max"] = {
            "mock_cores": record["cpu_seconds"]["mock"] / record["result"]["seconds"],
            "mock_cpu_ms_per_request": record["cpu_ms_per_request"]["mock"],
            "lime_cpu_ms_per_request": sum(v or 0.0 for k, v in record["cpu_ms_per_request"].items()
                                           if k in record["python"] or k in ("envoy", "redis", "postgres")),
        }
    concurrencies = sorted({r["result"]["concurrency"] for r in results["streams"]})
    for concurrency in concurrencies:
        rows = {r["target"]: r for r in results["streams"] if r["result"]["concurrency"] == concurrency}
        lime, envoy = rows.get("lime"), rows.get("envoy")
        if lime is None or envoy is None:
            continue
        lr, er = lime["result"], envoy["result"]
        summary["streams"].append({
            "concurrency": concurrency,
            "added_ttfb_p50_ms": lr["ttfb"]["p50"] - er["ttfb"]["p50"],
            "added_ttfb_p99_ms": lr["ttfb"]["p99"] - er["ttfb"]["p99"],
            "added_total_p50_ms": lr["total"]["p50"] - er["total"]["p50"],
            "added_total_p99_ms": lr["total"]["p99"] - er["total"]["p99"],
            "added_lag_p50_ms": lr["lag"]["p50"] - er["lag"]["p50"],
            "added_lag_p99_ms": lr["lag"]["p99"] - er["lag"]["p99"],
            "gap_stdev_ms": {"lime": lr["gap_stdev"], "envoy": er["gap_stdev"]},
            "coalesced": {"lime": lr["coalesced"], "envoy": er["coalesced"]},
            "events_per_stream": {"lime": lr["events_per_stream"], "envoy": er["events_per_stream"]},
            "failed": lr["failed"],
            "machine_busy": machine_busy(lime, results["meta"]["machine"]["cores"]),
            "python_cpu_ms_per_stream": _python_ms(lime),
            "python_cpu_ms_per_event": _python_ms(lime) / lr["events_per_stream"] if lr["events_per_stream"] else None,
        })
    summary["checks"] = _checks(summary, rates)
    return summary


def _checks(summary: dict[str, Any], rates: list[float]) -> list[dict[str, Any]]:
    checks: list[dict[str, Any]] = []

    def check(goal: str, measured: float | None, limit: float, *, at_least: bool = False, unit: str = "") -> None:
        ok = None if measured is None else (measured >= limit if at_least else measured <= limit)
        checks.append({"goal": goal, "measured": measured, "limit": limit, "unit": unit, "ok": ok,
                       "at_least": at_least})

    strict = summary["max_throughput"].get("lime")
    cpu = strict and sum(strict["cpu_ms_per_request"].get(name) or 0.0 for name in ("authz", "extproc"))
    check("authz + extproc CPU per non-streamed request, at the maximum throughput", cpu, TARGETS["python_cpu_ms"],
          unit="ms")
    check("maximum throughput (best run; < 0.1% errors required)",
          strict["rps"] if strict else None, TARGETS["throughput_rps"], at_least=True, unit="req/s")
    if strict is not None and strict["error_rate"] >= TARGETS["throughput_error_rate"]:
        checks[-1]["ok"] = False
    ratio = summary["throughput_ratios"]["lime_over_litellm"]
    check("throughput over LiteLLM's best configuration", ratio, TARGETS["litellm_ratio"], at_least=True, unit="x")
    near = min(summary["added_latency"], key=lambda r: abs(r["rate"] - 100), default=None)
    at = f" at {near['rate']:g} req/s" if near else ""
    check(f"p50 added latency over bare Envoy{at}", near and near["added_p50_ms"], TARGETS["added_p50_ms"], unit="ms")
    fifty = min(summary["streams"], key=lambda r: abs(r["concurrency"] - 50), default=None)
    if fifty is not None:
        check(f"streams: TTFB added p50, {fifty['concurrency']} streams", fifty["added_ttfb_p50_ms"],
              TARGETS["added_ttfb_p50_ms"], unit="ms")
        check(f"streams: per-event lag added p50, {fifty['concurrency']} streams", fifty["added_lag_p50_ms"],
              TARGETS["chunk_lag_p50_ms"], unit="ms")
    for row in summary["streams"]:
        check(f"streams: failed, {row['concurrency']} streams", row["failed"], 0, unit="streams")
        extra = row["coalesced"]["lime"] - row["coalesced"]["envoy"]
        busy = row.get("machine_busy")
        check(f"SSE not buffered: events coalesced beyond bare Envoy's, {row['concurrency']} streams (machine CPU "
              f"busy {busy:.2f})" if busy is not None else
              f"SSE not buffered: events coalesced beyond bare Envoy's, {row['concurrency']} streams", extra, 0,
              unit="events")
    return checks


def _f(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:,.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    machine = meta["machine"]
    v = meta["versions"]
    out = [
        f"# Lime bench — {meta['date']}",
        "",
        f"Machine: {machine['cores']} cores ({machine['cpu']}), {machine['memory_gib']} GiB, Linux "
        f"{machine['kernel']}; load average at start {', '.join(f'{x:.2f}' for x in machine['load_average_at_start'])}"
        f", at the end {', '.join(f'{x:.2f}' for x in machine.get('load_average_at_end', ()))}."
        f" Versions: Envoy {v.get('envoy')}, Python {v.get('python')}, grpcio {v.get('grpcio')}, {v.get('wrk')}, "
        f"{v.get('h2load')}" + (f", LiteLLM {v['litellm']}" if "litellm" in v else "") + ".",
        f"Command: `{meta['command']}` ({meta['seconds']:.0f} s).",
        "",
    ]
    if results["fixed_rate"] or results["max_throughput"] or results["streams"]:
        out += _targets_markdown(results)
    out += pinned_markdown(results)
    return "\n".join(out) + "\n"


def _targets_markdown(results: dict[str, Any]) -> list[str]:
    meta, summary = results["meta"], results["summary"]
    machine = meta["machine"]
    labels = meta["targets"]
    out = [
        "## Targets of issue 19",
        "",
    ]
    out += _table(["goal", "limit", "measured", ""], [
        [c["goal"], f"{'≥' if c['at_least'] else '≤'} {_f(c['limit'])} {c['unit']}",
         f"{_f(c['measured'])} {c['unit']}",
         {True: "met", False: "**not met**", None: "not measured"}[c["ok"]]]
        for c in summary["checks"]])
    out += ["", "## Non-streamed chat completions at fixed offered rates (h2load, open loop)", ""]
    rows = []
    for record in results["fixed_rate"]:
        r = record["result"]
        rows.append([_f(r["offered_rps"], 0), labels[record["target"]], _f(r["achieved_rps"], 1),
                     _f(r["latency"]["p50"]), _f(r["latency"]["p90"]), _f(r["latency"]["p99"]),
                     f"{r['errors']} ({100 * r['error_rate']:.2f}%)", _cpu_cell(record)])
    out += _table(["offered req/s", "target", "2xx/s", "p50 ms", "p90 ms", "p99 ms", "errors",
                   "CPU ms/request by process"], rows)
    out += ["", "Lime against bare Envoy at the same offered rate:", ""]
    out += _table(["offered req/s", "added p50 ms", "added p99 ms", "p50 ratio", "p99 ratio",
                   "authz+extproc CPU ms/req", "Envoy CPU ms/req (Lime / bare)"],
                  [[_f(row["rate"], 0), _f(row["added_p50_ms"]), _f(row["added_p99_ms"]),
                    _f(row["ratio_p50"]) + "x", _f(row["ratio_p99"]) + "x", _f(row["python_cpu_ms"], 3),
                    f"{_f(row['lime_envoy_cpu_ms'], 3)} / {_f(row['bare_envoy_cpu_ms'], 3)}"]
                   for row in summary["added_latency"]])
    out += ["", "## Maximum throughput (wrk, closed loop; best run with < 1% errors)", ""]
    rows = []
    for record in results["max_throughput"]:
        r = record["result"]
        rows.append([labels[record["target"]], str(r["connections"]), _f(r["achieved_rps"], 0),
                     _f(r["latency"]["p50"]), _f(r["latency"]["p99"]), f"{r['errors']} ({100 * r['error_rate']:.2f}%)",
                     _cpu_cell(record)])
    out += _table(["target", "connections", "2xx/s", "p50 ms", "p99 ms", "errors", "CPU ms/request by process"], rows)
    ratios = summary["throughput_ratios"]
    out += ["", "Best sustained: " + ", ".join(
        f"{labels[t]} {_f(b['rps'], 0)} req/s" for t, b in summary["max_throughput"].items() if b) +
        f". Lime / bare Envoy = {_f(ratios['lime_over_envoy'])}; Lime / LiteLLM = "
        f"{_f(ratios['lime_over_litellm'])}; mock direct / Lime = {_f(ratios['mock_over_lime'])}."]
    share = summary.get("mock_share_at_lime_max")
    if share:
        out += ["", f"The mock is not the bottleneck: at Lime's best throughput it used {_f(share['mock_cores'])} of a "
                    f"core ({_f(share['mock_cpu_ms_per_request'], 3)} ms CPU per request, against "
                    f"{_f(share['lime_cpu_ms_per_request'], 3)} ms for Lime's processes and stores), and alone it "
                    f"serves {_f(ratios['mock_over_lime'])}x Lime's best rate."]
    options = meta.get("options", {})
    out += ["", f"## Streamed chat completions ({options.get('stream_chunks', '?')} chunks "
                f"{options.get('stream_delay_ms', '?')} ms apart; Python SSE client, one stream per connection)", ""]
    rows = []
    for record in results["streams"]:
        r = record["result"]
        rows.append([labels[record["target"]], str(r["concurrency"]), f"{r['streams']} ({r['failed']} failed)",
                     _f(r["events_per_stream"], 1), _f(r["ttfb"]["p50"]), _f(r["ttfb"]["p99"]),
                     _f(r["total"]["p50"], 1),
                     _f(r["gap"]["p50"]), _f(r["gap"]["p99"]), _f(r["gap_stdev"]), _f(r["lag"]["p50"]),
                     _f(r["lag"]["p99"]), str(r["coalesced"]), _f(machine_busy(record, machine["cores"])),
                     _cpu_cell(record, per="stream")])
    out += _table(["target", "streams", "done", "events/stream", "TTFB p50", "TTFB p99", "total p50", "gap p50",
                   "gap p99", "gap stdev", "lag p50", "lag p99", "coalesced", "CPU busy", "CPU ms/stream by process"],
                  rows)
    out += ["", "Times in ms. lag: an event's arrival minus the moment the mock wrote it (LiteLLM re-encodes events, "
                "so it has none). coalesced: events that arrived in the same read as the one before. CPU busy: the "
                "share of the machine's cores the phase's processes used (the client and the load included); near "
                "1.00 the CPU is saturated and events wait for it, which is what coalesces them.", ""]
    out += _table(["streams", "added TTFB p50", "added TTFB p99", "added total p50", "added lag p50", "added lag p99",
                   "gap stdev Lime / Envoy", "authz+extproc CPU ms/stream", "… per event"],
                  [[str(row["concurrency"]), _f(row["added_ttfb_p50_ms"]), _f(row["added_ttfb_p99_ms"]),
                    _f(row["added_total_p50_ms"]), _f(row["added_lag_p50_ms"]), _f(row["added_lag_p99_ms"]),
                    f"{_f(row['gap_stdev_ms']['lime'])} / {_f(row['gap_stdev_ms']['envoy'])}",
                    _f(row["python_cpu_ms_per_stream"], 2), _f(row["python_cpu_ms_per_event"], 3)]
                   for row in summary["streams"]])
    if results.get("profile"):
        out += ["", "## Where authz and extproc spend their CPU (py-spy, under closed-loop load)", ""]
        for name, profile in results["profile"].items():
            out += [f"**{name}** ({profile['busy_samples']} busy samples of {profile['samples']}), by the innermost "
                    "Python frame: " + ", ".join(f"{area} {pct}%" for area, pct in profile["areas_percent"].items()),
                    "", "By leaf: " + ", ".join(f"{leaf} {pct}%" for leaf, pct in profile["leaf_percent"].items()),
                    ""]
            out += _table(["self %", "function"], [[str(p), f"`{f}`"] for f, p in profile["self_percent"][:12]])
            out += [""]
    return out


_NOT_SATURATED = (" (**below 0.9**: other processes of the machine took part of the core, or the three were not the "
                  "bottleneck; their CPU per request is not quite that of a core at capacity)")


def pinned_markdown(results: dict[str, Any]) -> list[str]:
    """The pinned phase: CPU per request and requests per core-second of each process, the check of the one-core
    run, and the N-core pod on paper (:mod:`bench.capacity`)."""
    pinned = results.get("pinned_summary") or {}
    if not pinned:
        return []
    options = results["meta"].get("options", {}).get("pinned_options", {})
    gateway, core, rest = pinned["gateway"], pinned["core"], ", ".join(str(c) for c in pinned["rest"])
    out = ["", "## One process per core (pinned)", "",
           f"Envoy (`--concurrency 1`), authz and extproc, one process each, pinned to core {core} (all threads, as "
           f"`taskset -a -c {core}`); settler, catalog_api, Redis, PostgreSQL, the mock and the load generator on "
           f"core {rest}. wrk closed loop, {pinned['connections']} connections, {_f(options.get('seconds'), 0)} s per "
           f"run. Core {core} was busy {_f(gateway['core_utilisation'])} of the time"
           f"{'' if gateway['saturated'] else _NOT_SATURATED}"
           f": {_f(gateway['rps'], 0)} req/s measured ({gateway['errors']} errors) against 1000 / "
           f"{_f(gateway['cpu_ms_per_request'], 3)} ms = {_f(gateway['predicted_rps'], 0)} predicted from the CPU "
           f"per request ({_f(gateway['measured_over_predicted'])}).", ""]
    rows = []
    for row in pinned["processes"]:
        alone = row["alone"]
        alone_cells = ["—", "—", "—"] if alone is None else [
            _f(alone["cpu_ms_per_request"], 3), _f(alone["utilisation"]) + ("" if alone["saturated"] else " (part)"),
            _f(alone["rps"], 0)]
        rows.append([row["process"] + ("" if row["on_core"] else f" (core {rest})"),
                     _f(row["cpu_ms_per_request"], 3), _f(row["requests_per_core_second"], 0),
                     _f(row["utilisation"]), *alone_cells, _f(row["cpu_ms_per_stream"], 3),
                     _f(row["cpu_ms_per_event"], 4), _f(row["events_per_core_second"], 0)])
    out += _table(["process", "CPU ms/request", "requests per core-second", "cores busy", f"alone on core {core}: "
                   "CPU ms/request", "… cores busy", "… req/s", "CPU ms per stream", "… per streamed event",
                   "events per core-second"], rows)
    streams = pinned.get("streams")
    out += ["", "Requests per core-second = 1000 / CPU ms per request, measured with the three sharing one saturated "
                "core (a one-core pod at capacity). *Alone*: that process alone on the core, everything else on the "
                "other: with two cores the rest saturates its core first, so the process runs at part load "
                "(\"part\": busy < 0.9 of its core), where less work is batched per wake-up than at capacity."]
    if streams:
        out += ["", f"Streams: {streams['concurrency']} concurrent ({streams['streams']} done, {streams['failed']} "
                    f"failed), {_f(streams['events_per_second'], 0)} events/s, core {core} busy "
                    f"{_f(streams['core_utilisation'])}; a stream's set-up (authz, extproc's headers) is in its "
                    "events' share."]
    out += ["", "A gateway pod on paper: requests/s ≈ N x 1000 / (Envoy + authz + extproc CPU ms per request), with "
                "the fewest Envoy workers and processes (LIME_PROCESSES: authz and extproc each) that leave the cores, "
                "not a process, the limit:", ""]
    out += _table(["cores", "ENVOY_CONCURRENCY", "LIME_PROCESSES", "req/s",
                   "cores busy: Envoy / authz / extproc", "behind the pod: settler / Redis / PostgreSQL cores"],
                  [[str(pod["cores"]), str(pod["envoy_concurrency"]), str(pod["lime_processes"]), _f(pod["rps"], 0),
                    " / ".join(_f(pod["busy_cores"][name]) for name in ("envoy", "authz", "extproc")),
                    " / ".join(_f(pod["behind_cores"][name]) for name in ("settler", "redis", "postgres"))]
                   for pod in pinned["pods"]])
    return out


def machine_busy(record: dict[str, Any], cores: int) -> float | None:
    """The share of the machine's cores that every process of a phase used together, the clients included."""
    seconds = float(record["result"].get("seconds") or 0.0)
    if not seconds or not cores:
        return None
    used: float = sum(value for value in record["cpu_seconds"].values() if value is not None)
    return used / (seconds * cores)


def _cpu_cell(record: dict[str, Any], per: str = "request") -> str:
    del per
    parts = [f"{name} {value:.3f}" for name, value in record["cpu_ms_per_request"].items()
             if value is not None and value >= 0.0005 and name != "bench client"]
    return ", ".join(parts)


def write(results: dict[str, Any], out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "results.json", "markdown": out / "results.md", "png": out / "results.png"}
    paths["json"].write_text(json.dumps(_clean(results), indent=1, allow_nan=False) + "\n")
    paths["markdown"].write_text(markdown(results))
    if results["fixed_rate"]:
        plot(results, paths["png"])
    else:
        del paths["png"]  # a pinned-only run has no latency to plot
    return paths


def _clean(value: Any) -> Any:
    """NaN (a percentile of nothing) as null, so the JSON is standard."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value
