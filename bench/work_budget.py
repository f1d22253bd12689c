"""A regression guard that counts work instead of timing it: Python function calls (and Redis commands) for one
non-streamed chat completion and one short stream through authz's HTTP edge (``AuthorizationService.check``) and
extproc's ``ExternalProcessorService.Process``, in process, with the bytes and messages Envoy would send.

Counting is deterministic where timing on a shared 2-core machine is not: the same code gives the same count on
every run, so a tolerance of a few percent catches real additions of work (a loop, a re-parse, an extra round
trip) without flaking. ``tests/unit/test_work_budget.py`` compares the counts with the committed baseline
``bench/work_budget.json``.

What is counted: every Python function call and resumption (``sys.setprofile`` "call" events, coroutines
included) and every call into C (``c_call``: protobuf, json, hashlib, ...) made by anything but the asyncio
machinery itself, whose bookkeeping depends on scheduling rather than on Lime's code. Nor does the garbage
collector run inside a counted block: what it would find there was left by earlier code. The stores are fakes at the
level of the client's methods (a real Redis would need the network): Lime's own work around them is counted,
redis-py's command encoding is not, and the number of Redis commands is checked exactly, since every extra
round trip on the request path costs far more than any Python call.

Update the baseline after an intended change with ``python -m bench.work_budget --update`` (and say why in the
commit). Print the counts with ``python -m bench.work_budget``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import gc
import json
import os
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

from authz.server import AuthorizationService
from bench.envoy_messages import EnvoyStream, authz_call, metadata_of_answer, processing_requests
from extproc.server import ExternalProcessorService
from lime.catalog import Catalog, Model, Package, Tenant, Upstream
from lime.devstack.mock_upstream.answers import Api, answer
from lime.directory import Directory, key_cache_name
from lime.http1_server import HttpConnection
from lime.keys import generate_key, hash_key
from lime.protocols.endpoints import ModelKind, Protocol
from lime.serving import InFlight

__all__ = ["BASELINE", "TOLERANCE", "Count", "count_scenarios", "main"]

BASELINE = Path(__file__).resolve().parent / "work_budget.json"
#: How far a count may move from the baseline before the guard fails (either way: a drop means the baseline is
#: stale and should be tightened, so it keeps catching regressions).
TOLERANCE = 0.15

TENANT = "demo"
MODEL = "lime-chat"
UPSTREAM_MODEL = "gpt-4o-mini"
# Not counted: asyncio's machinery, and this harness (the fake stores, the message source).
_SKIP = (os.path.dirname(asyncio.__file__), os.path.join(os.path.dirname(os.__file__), "selectors.py"), __file__)


class FakeRedis:
    """The Redis commands the request path sends, answered from memory: the cached key, and "ok" from every
    script (reserve, settle, extend)."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self.commands: collections.Counter[str] = collections.Counter()

    async def get(self, name: str) -> bytes | None:
        self.commands["GET"] += 1
        value = self.values.get(name)
        return value.encode() if value is not None else None

    async def set(self, name: str, value: str, **options: Any) -> bool:
        self.commands["SET"] += 1
        self.values.setdefault(name, value)
        return True

    async def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Any:
        self.commands["EVALSHA"] += 1
        return [b"ok", 0] if numkeys == 7 else 1  # reserve answers a verdict; settle and extend a number


class _Directory(Directory):
    """The real Directory (key lookups through Redis, the catalog snapshot) over a fixed catalog."""

    def __init__(self, catalog: Catalog, redis: FakeRedis) -> None:
        super().__init__("", cast(Any, None), cast(Any, redis))
        self._catalog = catalog


def _catalog() -> Catalog:
    return Catalog(
        version=1,
        upstreams={"mock": Upstream("mock", Protocol.OPENAI)},
        models={MODEL: Model(MODEL, "mock", UPSTREAM_MODEL, ModelKind.CHAT, input_price=150_000,
                             output_price=600_000, cached_input_price=75_000)},
        packages={"demo": Package("demo", "Demo", frozenset({MODEL}))},
        tenants={TENANT: Tenant(TENANT, "Demo tenant", "demo")},
    )


class _Transport:
    """The connection to Envoy as authz's HTTP server sees it: the answer written is kept."""

    def __init__(self) -> None:
        self.answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def write(self, data: bytes) -> None:
        self.answer.set_result(data)


class Count:
    """Calls seen by ``sys.setprofile``, outside asyncio's own modules, by the package of the code making them."""

    def __init__(self) -> None:
        self.calls = 0
        self.by_area: collections.Counter[str] = collections.Counter()
        self.by_function: collections.Counter[str] = collections.Counter()

    def profile(self, frame: types.FrameType, event: str, arg: object) -> None:
        if event != "call" and event != "c_call":
            return
        filename = frame.f_code.co_filename
        if filename.startswith(_SKIP):
            return
        self.calls += 1
        self.by_area[_area(filename)] += 1
        if event == "call":
            self.by_function[f"{frame.f_code.co_qualname} ({_short(filename)})"] += 1
        else:
            self.by_function[f"{getattr(arg, '__qualname__', arg)} (C, from {_short(filename)})"] += 1


def _short(filename: str) -> str:
    parts = filename.split("/")
    return "/".join(parts[-2:])


def _area(filename: str) -> str:
    for part in ("/authz/", "/extproc/", "/lime/", "/grpc/", "/google/", "/redis/", "/prometheus_client/"):
        if part in filename:
            return part.strip("/")
    return "stdlib/other"


class _Recorder:
    """Counts each ``with counted():`` block into the next phase's :class:`Count`."""

    def __init__(self, phases: tuple[str, ...]) -> None:
        self._phases = iter(phases)
        self.counts: dict[str, Count] = {}

    @contextlib.contextmanager
    def counted(self) -> Iterator[None]:
        """No garbage collection inside the block: a pass that happened to start there would run the finalizers
        and weakref callbacks of whatever earlier code left in reference cycles (another test's tasks and async
        generators leave asyncio's WeakSet registries to clean up, 2 calls each), so the count would depend on
        where the collector's allocation counter stood. What the block frees by reference counting still counts."""
        count = self.counts.setdefault(next(self._phases), Count())
        collecting = gc.isenabled()
        gc.disable()
        sys.setprofile(count.profile)
        try:
            yield
        finally:
            sys.setprofile(None)
            if collecting:
                gc.enable()


@contextlib.contextmanager
def _uncounted() -> Iterator[None]:
    yield


async def _scenario(stream: bool, counted: Callable[[], contextlib.AbstractContextManager[None]]) -> dict[str, Any]:
    key = generate_key().secret
    redis = FakeRedis({key_cache_name(hash_key(key)): json.dumps(["key-1", TENANT, True, None])})
    directory = _Directory(_catalog(), redis)
    authz = AuthorizationService(directory, cast(Any, redis), cast(Any, None), reservation_ttl_seconds=60)
    extproc = ExternalProcessorService({"mock": "upstream-secret"}.get, cast(Any, redis), reservation_ttl_seconds=60)
    client_body: dict[str, Any] = {"model": MODEL, "messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Hello! Say something short about gateways."}]}
    if stream:
        client_body.update(stream=True, stream_options={"include_usage": True})
    body = json.dumps(client_body).encode()
    upstream = answer(Api.CHAT, {**client_body, "model": UPSTREAM_MODEL, "max_tokens": 4096}, 8)
    chunks = list(upstream.events) if stream else [json.dumps(upstream.body).encode()]
    request_id = "2f1c6a9e-4b7d-4c1a-9e0f-6d3b2a1c0e9f"
    connection, transport = HttpConnection(authz.check, InFlight()), _Transport()
    connection.connection_made(cast(Any, transport))
    result: dict[str, Any] = {}
    with counted():
        connection.data_received(authz_call(TENANT, key, body, request_id))
        decision = await transport.answer
    result["authz_allowed"] = decision.startswith(b"HTTP/1.1 200 ")
    messages = processing_requests(metadata_of_answer(decision), TENANT, key, body, request_id, chunks,
                                   "text/event-stream; charset=utf-8" if stream else "application/json")

    envoy = EnvoyStream(*messages)
    with counted():
        await extproc.Process(envoy)
        observed = envoy.observed()
        if observed is not None:
            await extproc.Process(observed)
        await extproc.drain()
    result["extproc_answers"] = [answer.WhichOneof("response") for answer in envoy.answers]
    # Every message Envoy sends, and those it waits for a reply to (the observing tap's get none).
    result["extproc_messages"] = len(envoy.answers) + (len(observed.messages) if observed is not None else 0)
    result["extproc_replies"] = len(envoy.answers) + (len(observed.answers) if observed is not None else 0)
    # Body replies that carry bytes: a whole answer's rewrite, never a stream's chunk (lime.stream_bytes edits those).
    result["body_edits"] = sum(1 for answer in envoy.answers if answer.WhichOneof("response") == "response_body"
                                and answer.response_body.response.HasField("body_mutation"))
    result["redis_commands"] = dict(redis.commands)
    return result


def count_scenarios() -> dict[str, dict[str, Any]]:
    """The counts for each scenario: ``{"chat": {...}, "stream": {...}}``, each with authz and extproc calls, the
    calls by area, and the Redis commands. Each scenario runs once to warm caches, then once counted."""
    out: dict[str, dict[str, Any]] = {}
    for name, stream in (("chat", False), ("stream", True)):
        recorder = _Recorder(("authz", "extproc"))
        asyncio.run(_scenario(stream, _uncounted))  # warm-up: imports, compiled regexes, caches
        result = asyncio.run(_scenario(stream, recorder.counted))
        counts = recorder.counts
        if not result["authz_allowed"] or result["extproc_answers"][1] != "request_body":
            raise RuntimeError(f"the {name} scenario did not go through: {result}")
        out[name] = {
            "authz_calls": counts["authz"].calls,
            "extproc_calls": counts["extproc"].calls,
            "extproc_messages": result["extproc_messages"],
            "extproc_replies": result["extproc_replies"],
            "body_edits": result["body_edits"],
            "redis_commands": result["redis_commands"],
            "calls_by_area": {phase: dict(sorted(count.by_area.items())) for phase, count in counts.items()},
            "top_functions": {phase: count.by_function.most_common(12) for phase, count in counts.items()},
        }
    return out


def compare(measured: dict[str, dict[str, Any]], baseline: dict[str, Any],
            tolerance: float = TOLERANCE) -> list[str]:
    """What is out of budget, in words; empty when everything is within it."""
    problems = []
    for scenario, counts in baseline["scenarios"].items():
        now = measured[scenario]
        for field in ("authz_calls", "extproc_calls"):
            allowed, actual = counts[field], now[field]
            if actual > allowed * (1 + tolerance):
                problems.append(f"{scenario}: {field} {actual} is over the budget {allowed} (+{tolerance:.0%}): "
                                f"by area now {now['calls_by_area']}, at the baseline {counts['calls_by_area']}")
            elif actual < allowed * (1 - tolerance):
                problems.append(f"{scenario}: {field} {actual} is well under the budget {allowed}: good news; "
                                "tighten the baseline (python -m bench.work_budget --update) so it keeps guarding")
        if now["redis_commands"] != counts["redis_commands"]:
            problems.append(f"{scenario}: Redis commands {now['redis_commands']} differ from "
                            f"{counts['redis_commands']}: every round trip on the request path counts")
        if now["extproc_messages"] != counts["extproc_messages"]:
            problems.append(f"{scenario}: Envoy sent extproc {now['extproc_messages']} messages, the baseline "
                            f"{counts['extproc_messages']}: every ext_proc message is a gRPC round trip for Envoy "
                            "and extproc (docs/performance.md)")
        if now["extproc_replies"] != counts.get("extproc_replies", now["extproc_messages"]):
            problems.append(f"{scenario}: Envoy waited for {now['extproc_replies']} replies from extproc, the "
                            f"baseline {counts.get('extproc_replies')}: a stream's chunks go to the observing tap "
                            "(lime.stream_tap), which replies nothing (extproc/stream_modes.py)")
        if now["body_edits"] != counts.get("body_edits", 0):
            problems.append(f"{scenario}: extproc edited {now['body_edits']} bodies or chunks, the baseline "
                            f"{counts.get('body_edits', 0)}: a streamed answer's bytes are Envoy's to edit "
                            "(lime.stream_bytes, extproc/stream_modes.py)")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.work_budget", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--update", action="store_true", help=f"write the counts to {BASELINE}")
    args = parser.parse_args(argv)
    measured = count_scenarios()
    print(json.dumps(measured, indent=1))
    if args.update:
        BASELINE.write_text(json.dumps({
            "about": "Python calls per request through authz and extproc (bench/work_budget.py); "
                     "update with `python -m bench.work_budget --update`",
            "python": sys.version.split()[0],
            "tolerance": TOLERANCE,
            "scenarios": measured,
        }, indent=1) + "\n")
        print(f"written {BASELINE}")
        return 0
    if BASELINE.exists():
        problems = compare(measured, json.loads(BASELINE.read_text()))
        for problem in problems:
            print(problem)
        return 1 if problems else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
