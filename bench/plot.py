"""The bench report's PNG: p50/p99 latency against offered load for each target, and CPU per request by process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["plot"]


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = results["meta"]["targets"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.2))
    colours = {"mock": "tab:gray", "envoy": "tab:blue", "lime": "tab:green", "litellm": "tab:red"}
    for target, label in labels.items():
        points = sorted((r["result"]["offered_rps"], r["result"]["latency"]) for r in results["fixed_rate"]
                        if r["target"] == target)
        best = results["summary"]["max_throughput"].get(target)
        xs = [p[0] for p in points]
        colour = colours.get(target)
        for key, style in (("p50", "-"), ("p99", "--")):
            ys = [p[1][key] for p in points]
            left.plot(xs, ys, style, marker="o", color=colour, label=f"{label} {key}")
        if best:
            left.scatter([best["rps"]], [best["p50_ms"]], marker="*", s=160, color=colour, zorder=5)
            left.scatter([best["rps"]], [best["p99_ms"]], marker="*", s=160, color=colour, zorder=5,
                         facecolors="none")
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("offered load, req/s (★: maximum sustained throughput, closed loop)")
    left.set_ylabel("latency, ms")
    left.set_title("Non-streamed chat completions: p50 (solid) and p99 (dashed)")
    left.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=7, ncol=2)

    near = min(results["summary"]["added_latency"], key=lambda r: abs(r["rate"] - 300), default=None)
    rate = near["rate"] if near else None
    rows = [r for r in results["fixed_rate"] if r["result"]["offered_rps"] == rate]
    names = [r["target"] for r in rows]
    processes = sorted({p for r in rows for p, v in r["cpu_ms_per_request"].items()
                        if v and v > 0.0005 and p not in ("bench client", "load generator")})
    bottom = [0.0] * len(rows)
    for process in processes:
        values = [r["cpu_ms_per_request"].get(process) or 0.0 for r in rows]
        right.bar([labels[n] for n in names], values, bottom=bottom, label=process)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    right.set_ylabel("CPU ms per request (= CPU s per 1,000 requests)")
    right.set_title(f"CPU per non-streamed request by process, at {rate:g} req/s" if rate else "CPU per request")
    right.legend(fontsize=7)
    right.tick_params(axis="x", labelsize=8)
    fig.suptitle(f"Lime bench, {results['meta']['date']}, {results['meta']['machine']['cores']} cores")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
