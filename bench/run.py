"""``python -m bench``: start everything, run every phase against every target, write and print the results.

Phases, each run target after target so that every number has a bare-Envoy twin measured moments apart:

1. warm-up (a short closed-loop burst per target);
2. non-streamed chat completions at fixed offered rates (h2load, open loop);
3. non-streamed maximum throughput (wrk, closed loop, a few connection counts);
4. streamed chat completions at fixed concurrency (the Python SSE client in :mod:`bench.streams`);
5. with ``--profile``: py-spy samples authz and extproc under closed-loop load (off the measured phases);
6. pinned (``--no-pinned`` skips it, ``--pinned-only`` runs it alone; ~45 s), in an environment of its own: Envoy
   (one worker), authz and extproc, one process each, pinned to one core, everything else to the other: requests per
   core-second of each process and the capacity of an N-core pod on paper (:mod:`bench.pinned`,
   :mod:`bench.capacity`).

Around each phase the CPU time of every process involved is read from /proc (:mod:`bench.cpu`).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from bench import capacity, cpu, report
from bench.environment import MODEL, Environment, Target, bench_environment
from bench.load import LoadResult, fixed_rate, max_throughput
from bench.pinned import ENVOY_CONCURRENCY as PINNED_ENVOY_CONCURRENCY
from bench.pinned import PinnedOptions, PinnedRunner
from bench.profile_summary import summarise_profile
from bench.streams import StreamPhase, run_streams

__all__ = ["Options", "main"]

RESULTS = Path(__file__).resolve().parent / "results"
R = TypeVar("R")


@dataclass(frozen=True)
class Options:
    rates: tuple[float, ...]
    seconds: float
    max_connections: tuple[int, ...]
    max_seconds: float
    stream_concurrency: tuple[int, ...]
    stream_seconds: float
    stream_chunks: int
    stream_delay_ms: int
    warmup_seconds: float
    mock_workers: int
    litellm: Path | None
    #: One LiteLLM target per count: one worker (the default run) and one per core (its production advice).
    litellm_workers: tuple[int, ...]
    #: LIME_PROCESSES of the Lime target (authz and extproc each).
    lime_processes: int
    profile_seconds: float
    #: The pinned phase: "also" (after the targets' phases, the default), "off" or "only".
    pinned: str
    pinned_options: PinnedOptions
    out: Path
    quick: bool

    @classmethod
    def parse(cls, argv: list[str] | None = None) -> Options:
        parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                         formatter_class=argparse.RawDescriptionHelpFormatter)
        parser.add_argument("--quick", action="store_true", help="short phases (about 2 minutes in all)")
        parser.add_argument("--rates", help="offered rates, req/s, comma-separated (default 100,300,1000)")
        parser.add_argument("--seconds", type=float, help="seconds per fixed-rate phase (default 10, quick 3)")
        parser.add_argument("--max-connections", help="wrk connection counts (default 16,64; quick 32)")
        parser.add_argument("--max-seconds", type=float, help="seconds per throughput phase (default 10, quick 4)")
        parser.add_argument("--streams", help="concurrent streams, comma-separated (default 50,200)")
        parser.add_argument("--stream-seconds", type=float, help="seconds per stream phase (default 10, quick 4)")
        parser.add_argument("--stream-chunks", type=int, default=50, help="text chunks per stream (default 50)")
        parser.add_argument("--stream-delay-ms", type=int, default=20, help="ms between events (default 20)")
        parser.add_argument("--mock-workers", type=int, default=1, help="mock processes (SO_REUSEPORT, default 1)")
        parser.add_argument("--litellm", type=Path, help="the `litellm` executable: adds LiteLLM as a target")
        parser.add_argument("--litellm-workers",
                            help="LiteLLM worker counts, one target each (default 1 and one per core: "
                                 "its docs' production advice)")
        parser.add_argument("--lime-processes", type=int, default=1,
                            help="authz and extproc processes each (LIME_PROCESSES; default 1)")
        parser.add_argument("--profile", type=float, default=0.0, metavar="SECONDS",
                            help="also sample authz and extproc with py-spy for this long under load")
        pinned = parser.add_mutually_exclusive_group()
        pinned.add_argument("--no-pinned", action="store_true",
                            help="skip the pinned phase (one process per core: Envoy, authz, extproc pinned to one "
                                 "core; ~45 s, quick ~25 s)")
        pinned.add_argument("--pinned-only", action="store_true", help="only the pinned phase")
        parser.add_argument("--pinned-seconds", type=float,
                            help="seconds per pinned run (default 6, quick 3; a warm-up of a quarter, at least 1 s, "
                                 "before each)")
        parser.add_argument("--pinned-connections", type=int, default=32,
                            help="wrk connections of the pinned runs (default 32)")
        parser.add_argument("--pinned-streams", type=int, default=100,
                            help="concurrent streams of the pinned streams run (default 100; 0: none)")
        parser.add_argument("--out", type=Path, default=RESULTS, help=f"output folder (default {RESULTS})")
        args = parser.parse_args(argv)
        quick = bool(args.quick)

        def numbers(text: str | None, default: str) -> tuple[float, ...]:
            return tuple(float(x) for x in (text or default).split(",") if x.strip())

        pinned_seconds = float(args.pinned_seconds or (3.0 if quick else 6.0))

        return cls(
            rates=numbers(args.rates, "100,300,1000"),
            seconds=args.seconds or (3.0 if quick else 10.0),
            max_connections=tuple(int(x) for x in numbers(args.max_connections, "32" if quick else "16,64")),
            max_seconds=args.max_seconds or (4.0 if quick else 10.0),
            stream_concurrency=tuple(int(x) for x in numbers(args.streams, "50,200")),
            stream_seconds=args.stream_seconds or (4.0 if quick else 10.0),
            stream_chunks=args.stream_chunks, stream_delay_ms=args.stream_delay_ms,
            warmup_seconds=1.0 if quick else 3.0,
            mock_workers=args.mock_workers, litellm=args.litellm,
            litellm_workers=tuple(sorted({int(x) for x in numbers(args.litellm_workers, f"1,{os.cpu_count() or 1}")})),
            lime_processes=args.lime_processes,
            profile_seconds=args.profile, out=args.out, quick=quick,
            pinned="only" if args.pinned_only else "off" if args.no_pinned else "also",
            pinned_options=PinnedOptions(
                seconds=pinned_seconds, warmup_seconds=max(1.0, round(pinned_seconds / 4)),
                connections=args.pinned_connections, streams=args.pinned_streams,
                stream_chunks=args.stream_chunks, stream_delay_ms=args.stream_delay_ms),
        )


def _say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def _chat_body() -> bytes:
    return json.dumps({"model": MODEL, "messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Hello! Say something short about gateways."}]}).encode()


def _stream_body(model: str) -> bytes:
    # include_usage as most SDK users who bill send it; without it Lime asks for it anyway and hides that chunk.
    return json.dumps({"model": model, "stream": True, "stream_options": {"include_usage": True}, "messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Hello! Say something short about gateways."}]}).encode()


class Runner:
    def __init__(self, options: Options, env: Environment, work_dir: Path) -> None:
        self.options = options
        self.env = env
        self.work_dir = work_dir
        self.records: dict[str, list[dict[str, Any]]] = {"fixed_rate": [], "max_throughput": [], "streams": []}

    def _groups(self, target: Target) -> dict[str, int]:
        return {**target.groups, "mock": self.env.mock_group, **self.env.store_groups}

    def _measured(self, target: Target, phase: Callable[[], R]) -> tuple[R, dict[str, float]]:
        groups = self._groups(target)
        before = cpu.snapshot(groups)
        result = phase()
        used = cpu.snapshot(groups).minus(before)
        return result, {name: round(seconds, 4) for name, seconds in used.items()}

    def _say(self, text: str) -> None:
        _say(text)

    def warm_up(self) -> None:
        for target in self.env.targets:
            self._say(f"warm-up {target.name}")
            max_throughput(target.url, target.headers, _chat_body(), 8, self.options.warmup_seconds, self.work_dir)

    def fixed_rates(self) -> None:
        saturated: set[str] = set()
        for rate in self.options.rates:
            for target in self.env.targets:
                if target.name in saturated:
                    self._say(f"{target.name:8} {rate:6.0f} req/s offered: skipped (it could not keep up with less)")
                    continue
                result, used = self._measured(target, functools.partial(
                    fixed_rate, target.url, target.headers, _chat_body(), rate, self.options.seconds, self.work_dir))
                self._record("fixed_rate", target, result, used, result.requests)
                if result.achieved_rps < rate / 2:
                    saturated.add(target.name)
                self._say(f"{target.name:8} {rate:6.0f} req/s offered: {result.achieved_rps:7.1f} ok/s, "
                          f"p50 {result.latency.p50:6.2f} ms, p99 {result.latency.p99:7.2f} ms, "
                          f"errors {result.errors}")

    def max_throughputs(self) -> None:
        for connections in self.options.max_connections:
            for target in self.env.targets:
                result, used = self._measured(target, functools.partial(
                    max_throughput, target.url, target.headers, _chat_body(), connections, self.options.max_seconds,
                    self.work_dir))
                self._record("max_throughput", target, result, used, result.requests)
                self._say(f"{target.name:8} {connections:4d} connections: {result.achieved_rps:8.1f} ok/s, "
                          f"p50 {result.latency.p50:6.2f} ms, p99 {result.latency.p99:7.2f} ms, "
                          f"errors {result.errors}")

    def streams(self) -> None:
        o = self.options
        mock_headers = {"x-mock-chunks": str(o.stream_chunks), "x-mock-delay-ms": str(o.stream_delay_ms)}
        for concurrency in o.stream_concurrency:
            for target in self.env.targets:
                headers = {**target.headers, **mock_headers}
                result, used = self._measured(target, functools.partial(
                    run_streams, target.url, headers, _stream_body(target.stream_model), concurrency, o.stream_seconds,
                    stagger=o.stream_delay_ms / 1000))
                self._record("streams", target, result, used, result.streams)
                self._say(f"{target.name:8} {concurrency:4d} streams: {result.streams} done ({result.failed} failed), "
                          f"TTFB p50 {result.ttfb.p50:6.2f} ms, gap p99 {result.gap.p99:6.2f} ms, "
                          f"lag p50 {result.lag.p50:6.2f} ms")

    def _record(self, kind: str, target: Target, result: LoadResult | StreamPhase, used: dict[str, float],
                count: int) -> None:
        self.records[kind].append({
            "target": target.name,
            "result": result.to_json(),
            "cpu_seconds": used,
            "cpu_ms_per_request": {name: round(seconds * 1000 / count, 4) if count else None
                                   for name, seconds in used.items()},
            "python": list(target.python),
        })

    def profile(self) -> dict[str, Any]:
        lime = next(t for t in self.env.targets if t.name == "lime")
        seconds = self.options.profile_seconds
        self._say(f"profiling authz and extproc for {seconds:.0f}s under closed-loop load (32 connections)")
        spies = {}
        for name in ("authz", "extproc"):
            out = self.work_dir / f"{name}.folded"
            spy = str(Path(sys.executable).parent / "py-spy")
            spies[name] = (out, subprocess.Popen(
                [spy, "record", "--pid", str(lime.groups[name]), "--duration", str(int(seconds)), "--rate", "100",
                 "--native", "--format", "raw", "--output", str(out)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        max_throughput(lime.url, lime.headers, _chat_body(), 32, seconds + 2, self.work_dir)
        profiles = {}
        for name, (out, process) in spies.items():
            process.wait(timeout=60)
            if out.exists():
                target = self.options.out / f"profile-{name}.folded"
                target.write_text(out.read_text())
                profiles[name] = summarise_profile(out.read_text())
        return profiles


def _machine() -> dict[str, Any]:
    model = "?"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cores": os.cpu_count(), "cpu": model, "memory_gib": round(memory, 1), "kernel": platform.release(),
            "load_average_at_start": os.getloadavg()}


def _option(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) and not isinstance(value, type) else value


def main(argv: list[str] | None = None) -> int:
    options = Options.parse(argv)
    options.out.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC)
    meta: dict[str, Any] = {
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python -m bench " + shlex.join(sys.argv[1:] if argv is None else argv),
        "machine": _machine(),
        "options": {k: _option(v) for k, v in options.__dict__.items()},
    }
    results: dict[str, Any] = {"meta": meta, "fixed_rate": [], "max_throughput": [], "streams": [], "profile": {},
                               "pinned": []}

    def finish() -> dict[str, Path]:
        meta["machine"]["load_average_at_end"] = os.getloadavg()
        meta["seconds"] = round((datetime.now(UTC) - started).total_seconds(), 1)
        results["summary"] = report.summarise(results)
        results["pinned_summary"] = capacity.summarise_pinned(results["pinned"])
        return report.write(results, options.out)

    if options.pinned != "only":
        print(f"Lime bench ({'quick' if options.quick else 'full'}): starting PostgreSQL, Redis, the mock, bare "
              f"Envoy, Lime{' and LiteLLM' if options.litellm else ''}…", flush=True)
        with bench_environment(mock_workers=options.mock_workers, litellm=options.litellm,
                               litellm_workers=options.litellm_workers, lime_processes=options.lime_processes,
                               stream_chunks=options.stream_chunks,
                               stream_delay_ms=options.stream_delay_ms) as env:
            meta["versions"] = env.versions
            meta["targets"] = {t.name: t.label for t in env.targets}
            runner = Runner(options, env, env.log_dir.parent)
            runner.warm_up()
            runner.fixed_rates()
            runner.max_throughputs()
            runner.streams()
            results.update(runner.records)
            results["profile"] = runner.profile() if options.profile_seconds > 0 else {}
            # Written before everything is stopped, so a failure while stopping loses nothing.
            paths = finish()
    if options.pinned != "off":
        _say("pinned: starting PostgreSQL, Redis, the mock and Lime again (Envoy --concurrency "
             f"{PINNED_ENVOY_CONCURRENCY}, authz and extproc one process each)")
        with bench_environment(mock_workers=options.mock_workers, lime_processes=1,
                               stream_chunks=options.stream_chunks, stream_delay_ms=options.stream_delay_ms,
                               envoy_concurrency=PINNED_ENVOY_CONCURRENCY) as env:
            meta.setdefault("versions", env.versions)
            meta.setdefault("targets", {t.name: t.label for t in env.targets})
            pinned = PinnedRunner(options.pinned_options, env, env.log_dir.parent, _chat_body(),
                                  _stream_body(MODEL), _say)
            results["pinned"] = pinned.run()
            paths = finish()
    print()
    print(paths["markdown"].read_text())
    print("written: " + ", ".join(str(p) for p in paths.values()))
    return 0
