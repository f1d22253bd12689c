"""The pinned phase: requests per core-second of one process on one core (issue 19, requirement 4), from which the
capacity of an N-core gateway pod follows on paper (:mod:`bench.capacity`).

It runs in an environment of its own: Envoy ``--concurrency 1``, authz and extproc one process each. Every process
of the run is pinned, all its threads (``os.sched_setaffinity`` on each task, as ``taskset -a -p -c`` does), to the
first core the bench may use (core 0 here) or to the others; the bench process, and so wrk, which it forks, and the
streams client, which runs in it, are on the others. Layouts, wrk closed loop each:

* ``gateway``: Envoy, authz and extproc share core 0; settler, catalog_api, Redis, PostgreSQL, the mock and the load
  generator are on the others. Core 0 is the bottleneck (the rest costs a fraction of what the three do), so this
  is a one-core gateway pod at capacity: each process's CPU per request is measured while it is saturated, as in a
  pod at its limit, and the check is that the throughput equals ``1000 / (sum of their CPU ms per request)``, i.e.
  that core 0 was busy all the time.
* ``envoy``, ``authz``, ``extproc``: that process alone on core 0, everything else on the others. On 2 cores the
  rest (two of the three plus the stores, the mock and wrk) costs more per request than the process alone, so the
  other core saturates first and the process runs below its core's capacity: its CPU per request is then measured
  at part load, where less work is batched per wake-up. The report gives its utilisation; on a machine with more
  cores the rest gets more of them and the process saturates.
* streams (``gateway`` layout): concurrent SSE streams; CPU per streamed event of Envoy and extproc.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import cpu
from bench.capacity import GATEWAY
from bench.environment import Environment, Target
from bench.load import max_throughput
from bench.streams import run_streams

__all__ = ["LAYOUTS", "PinnedOptions", "PinnedRunner", "set_affinity"]

#: name -> the processes alone on core 0.
LAYOUTS: dict[str, tuple[str, ...]] = {"gateway": GATEWAY, **{name: (name,) for name in GATEWAY}}
#: What the Envoy of the pinned environment runs with: one worker thread, to pin on one core.
ENVOY_CONCURRENCY = 1


@dataclass(frozen=True)
class PinnedOptions:
    seconds: float
    warmup_seconds: float
    connections: int
    #: Concurrent streams of the streams run (0: none).
    streams: int
    stream_chunks: int
    stream_delay_ms: int


def set_affinity(pids: Iterable[int], cpus: set[int]) -> None:
    """Every thread of each process onto ``cpus`` (threads and processes they start later inherit it)."""
    for pid in pids:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            for task in Path(f"/proc/{pid}/task").iterdir():
                with contextlib.suppress(ProcessLookupError):
                    os.sched_setaffinity(int(task.name), cpus)


class PinnedRunner:
    def __init__(self, options: PinnedOptions, env: Environment, work_dir: Path, chat_body: bytes,
                 stream_body: bytes, say: Callable[[str], None]) -> None:
        self.options = options
        self.env = env
        self.work_dir = work_dir
        self.chat_body = chat_body
        self.stream_body = stream_body
        self.say = say
        self.lime: Target = next(t for t in env.targets if t.name == "lime")
        #: The processes whose CPU is read: Lime's, the mock, the stores.
        self.measured = {**self.lime.groups, "mock": env.mock_group, **env.store_groups}
        #: Everything the bench started, to pin: the measured ones and the idle other targets (bare Envoy).
        self.roots = {**self.measured, **{f"{t.name} {name}": pid for t in env.targets if t.name != "lime"
                                          for name, pid in t.groups.items()}}
        cpus = sorted(os.sched_getaffinity(0))
        self.all_cpus = set(cpus)
        self.core = cpus[0]
        self.rest = set(cpus[1:])

    @contextlib.contextmanager
    def _layout(self, pinned: tuple[str, ...]) -> Iterator[None]:
        trees = cpu.process_trees(self.roots)
        try:
            for name, pids in trees.items():
                set_affinity(pids, {self.core} if name in pinned else self.rest)
            set_affinity([os.getpid()], self.rest)
            yield
        finally:
            for pids in cpu.process_trees(self.roots).values():
                set_affinity(pids, self.all_cpus)
            set_affinity([os.getpid()], self.all_cpus)

    def _measure(self, phase: Callable[[], Any]) -> tuple[Any, dict[str, float], float]:
        before = cpu.snapshot(self.measured)
        started = time.monotonic()
        result = phase()
        wall = time.monotonic() - started
        used = cpu.snapshot(self.measured).minus(before)
        return result, used, wall

    def _record(self, layout: str, kind: str, result: Any, used: dict[str, float], wall: float,
                count: int) -> dict[str, Any]:
        return {
            "layout": layout, "kind": kind, "pinned": list(LAYOUTS[layout]), "core": self.core,
            "rest": sorted(self.rest), "result": result.to_json(), "wall_seconds": round(wall, 3),
            "cpu_seconds": {name: round(seconds, 4) for name, seconds in used.items()},
            f"cpu_ms_per_{kind}": {name: round(seconds * 1000 / count, 4) if count else None
                                   for name, seconds in used.items()},
            "utilisation": {name: round(seconds / wall, 3) if wall else None for name, seconds in used.items()},
        }

    def run(self) -> list[dict[str, Any]]:
        o = self.options
        if not self.rest:
            self.say("pinned: skipped, the bench may use one core only (it needs two)")
            return []
        records: list[dict[str, Any]] = []
        url, headers = self.lime.url, self.lime.headers
        for layout, pinned in LAYOUTS.items():
            with self._layout(pinned):
                max_throughput(url, headers, self.chat_body, o.connections, o.warmup_seconds, self.work_dir)
                result, used, wall = self._measure(lambda: max_throughput(
                    url, headers, self.chat_body, o.connections, o.seconds, self.work_dir))
            record = self._record(layout, "request", result, used, wall, result.requests)
            records.append(record)
            busy = sum(record["utilisation"].get(name) or 0.0 for name in pinned)
            self.say(f"pinned {layout:8} ({'+'.join(pinned)} on core {self.core}): {result.achieved_rps:7.1f} ok/s, "
                     f"errors {result.errors}, core {self.core} busy {busy:.2f}, CPU ms/request "
                     + ", ".join(f"{name} {record['cpu_ms_per_request'][name]:.3f}" for name in pinned))
        if o.streams > 0:
            stream_headers = {**headers, "x-mock-chunks": str(o.stream_chunks),
                              "x-mock-delay-ms": str(o.stream_delay_ms)}
            with self._layout(GATEWAY):
                streams, used, wall = self._measure(lambda: run_streams(
                    url, stream_headers, self.stream_body, o.streams, o.seconds, stagger=o.stream_delay_ms / 1000))
            record = self._record("gateway", "event", streams, used, wall, streams.events)
            record["cpu_ms_per_stream"] = {name: round(seconds * 1000 / streams.streams, 4) if streams.streams
                                           else None for name, seconds in used.items()}
            records.append(record)
            self.say(f"pinned streams ({o.streams} on core {self.core}): {streams.streams} done "
                     f"({streams.failed} failed), {streams.events} events, CPU ms/event "
                     + ", ".join(f"{name} {record['cpu_ms_per_event'][name]:.4f}" for name in GATEWAY))
        return records

