"""Non-streamed load, driven by C load generators from Debian's packages.

* Fixed offered rate: ``h2load --h1 --rps`` (nghttp2-client), open loop. ``rate / 25`` HTTP/1.1 connections each
  send 25 requests a second; their starts are staggered over one interval (``-r``/``--rate-period``), so the
  requests arrive spread out rather than in bursts. A connection whose answer is late sends its next request as
  soon as it can and catches up. Latencies come from h2load's per-request log.
* Maximum throughput: ``wrk`` (closed loop, fixed connections) for a few connection counts; the best one with
  < 1% errors is the sustained maximum.

Both speak HTTP/1.1 with keep-alive, as the OpenAI and Anthropic SDKs do.
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["Latency", "LoadResult", "fixed_rate", "max_throughput", "percentile"]

#: Requests per second each h2load connection sends at a fixed rate.
PER_CONNECTION_RPS = 25.0


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100) of already sorted values, by linear interpolation; NaN when empty."""
    if not sorted_values:
        return math.nan
    rank = (len(sorted_values) - 1) * p / 100
    low = math.floor(rank)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)


@dataclass(frozen=True)
class Latency:
    """Milliseconds."""

    p50: float
    p90: float
    p99: float
    max: float
    mean: float

    @classmethod
    def of(cls, values_ms: Sequence[float]) -> Latency:
        ordered = sorted(values_ms)
        if not ordered:
            return cls(math.nan, math.nan, math.nan, math.nan, math.nan)
        return cls(percentile(ordered, 50), percentile(ordered, 90), percentile(ordered, 99), ordered[-1],
                   statistics.fmean(ordered))


@dataclass(frozen=True)
class LoadResult:
    tool: str
    offered_rps: float | None  # None: closed loop (maximum throughput)
    connections: int
    attempts: int  # requests sent, or meant to be sent
    requests: int  # answered, any status
    errors: int  # not answered, or not 2xx
    achieved_rps: float  # 2xx answers per second
    seconds: float
    latency: Latency

    @property
    def error_rate(self) -> float:
        return self.errors / self.attempts if self.attempts else 1.0

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["error_rate"] = self.error_rate
        return out


def _header_args(headers: Mapping[str, str]) -> list[str]:
    args: list[str] = []
    for name, value in {"content-type": "application/json", **headers}.items():
        args += ["-H", f"{name}: {value}"]
    return args


def fixed_rate(url: str, headers: Mapping[str, str], body: bytes, rate: float, seconds: float,
               work_dir: Path) -> LoadResult:
    """``rate`` requests per second for about ``seconds``, open loop; latency of each answered request."""
    connections = max(1, math.ceil(rate / PER_CONNECTION_RPS))
    per_connection = rate / connections
    total = max(connections, round(rate * seconds))
    # Stagger the connections' starts evenly over one request interval (h2load's rate period is whole ms).
    interval_ms = 1000 / per_connection
    spacing_ms = interval_ms / connections
    if spacing_ms >= 1:
        stagger = ["-r", "1", "--rate-period", f"{round(spacing_ms)}ms"]
    else:
        stagger = ["-r", str(math.ceil(1 / spacing_ms)), "--rate-period", "1ms"]
    body_file, log_file = work_dir / "body.json", work_dir / "h2load.log"
    body_file.write_bytes(body)
    log_file.unlink(missing_ok=True)
    argv = ["h2load", "--h1", "-t", "1", "-c", str(connections), "--rps", f"{per_connection:.4f}", *stagger,
            "-n", str(total), "-d", str(body_file), "--log-file", str(log_file), *_header_args(headers), url]
    try:
        subprocess.run(argv, capture_output=True, text=True, check=False, timeout=seconds * 3 + 15)
    except subprocess.TimeoutExpired:
        pass  # what was answered until then is in the log; the rest counts as errors
    starts: list[float] = []
    ends: list[float] = []
    latencies: list[float] = []
    failures = 0
    if log_file.exists():
        for line in log_file.read_text().splitlines():
            start_us, status, duration_us = line.split("\t")
            if not 200 <= int(status) < 300:
                failures += 1
            starts.append(int(start_us) / 1e6)
            ends.append((int(start_us) + int(duration_us)) / 1e6)
            latencies.append(int(duration_us) / 1000)
    answered = len(latencies)
    span = (max(ends) - min(starts)) if answered else 0.0
    return LoadResult("h2load", rate, connections, total, answered, failures + (total - answered),
                      (answered - failures) / span if span else 0.0, span, Latency.of(latencies))


_WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = {body}
{headers}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH_JSON {{\\"requests\\":%d,\\"duration_us\\":%d,\\"connect\\":%d,\\"read\\":%d,\\"write\\":%d," ..
    "\\"status\\":%d,\\"timeout\\":%d,\\"p50\\":%d,\\"p90\\":%d,\\"p99\\":%d,\\"max\\":%d,\\"mean\\":%f}}\\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""


def _lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid Lua string literal for this ASCII text


def max_throughput(url: str, headers: Mapping[str, str], body: bytes, connections: int, seconds: float,
                   work_dir: Path) -> LoadResult:
    """wrk with ``connections`` connections for ``seconds``: as many requests as the target answers."""
    lines = [f"wrk.headers[{_lua_string(name)}] = {_lua_string(value)}"
             for name, value in {"Content-Type": "application/json", **headers}.items()]
    script = work_dir / "wrk.lua"
    script.write_text(_WRK_SCRIPT.format(body=_lua_string(body.decode()), headers="\n".join(lines)))
    # wrk reads whole seconds only ("1.5s" is a usage error).
    argv = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{max(1, math.ceil(seconds))}s", "--timeout", "10s",
            "-s", str(script), url]
    out = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=seconds + 30).stdout
    line = next((row for row in out.splitlines() if row.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{out}")
    data = json.loads(line.removeprefix("BENCH_JSON "))
    duration = data["duration_us"] / 1e6
    socket_errors = data["connect"] + data["read"] + data["write"] + data["timeout"]
    errors = socket_errors + data["status"]
    latency = Latency(data["p50"] / 1000, data["p90"] / 1000, data["p99"] / 1000, data["max"] / 1000,
                      data["mean"] / 1000)
    return LoadResult("wrk", None, connections, data["requests"] + socket_errors, data["requests"], errors,
                      (data["requests"] - data["status"]) / duration, duration, latency)
