"""What the JSON calls on the request path cost with the standard library and with orjson (issue 19, req. 3b).

``python -m bench.micro_json``: every JSON call that one non-streamed chat completion and one stream make through
authz and extproc (the work budget's requests, ``bench/work_budget.py``), caught at their call sites with their
real arguments, each then timed the standard library's way (before) and the way the site does it now:
:mod:`lime.protocols.fast_json` (orjson, with its checks) where it is applied, orjson alone (for comparison) where
it is not. The settler's decoding of the usage event is added by hand (it runs in its own process). A third table
times the sites whose cost grows with the request body, for an agent's body of 256 KiB.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import statistics
import sys
import time
import timeit
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import orjson

from bench import work_budget
from lime.protocols import fast_json

__all__ = ["Call", "capture", "main"]

_JSON_DIR = json.__file__.rsplit("/", 1)[0]


@dataclass
class Call:
    """One call site: what it called, with which arguments the first time, and how often per request."""

    site: str
    kind: str  # loads, dumps or encode (the standard library's), fast.loads, fast.parse or fast.dumps
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    count: int = 0


def _site(depth: int) -> str | None:
    frame = sys._getframe(depth)
    filename = frame.f_code.co_filename
    if filename.startswith(_JSON_DIR) or filename == fast_json.__file__ or "/bench/" in filename \
            or "/devstack/" in filename:
        return None  # json's and fast_json's own nesting (dumps calls encode), the harness, the mock upstream
    short = filename.split("/")[-2] + "/" + filename.split("/")[-1]
    return f"{short}:{frame.f_lineno} {frame.f_code.co_name}"


@contextmanager
def _recording(calls: dict[str, Call]) -> Iterator[None]:
    originals = {("json", name): getattr(json, name) for name in ("loads", "dumps")}
    originals.update({("fast", name): getattr(fast_json, name) for name in ("loads", "parse", "dumps")})

    def recorder(module: str, name: str) -> Callable[..., Any]:
        function = originals[module, name]

        def recording(*args: Any, **kwargs: Any) -> Any:
            site = _site(2)
            if site is not None:
                kind = name if module == "json" else f"fast.{name}"
                calls.setdefault(site, Call(site, kind, args, kwargs)).count += 1
            return function(*args, **kwargs)
        return recording

    encode = json.JSONEncoder.encode

    def recording_encode(self: json.JSONEncoder, value: Any) -> str:
        site = _site(2)
        if site is not None:
            calls.setdefault(site, Call(site, "encode", (self, value), {})).count += 1
        return encode(self, value)

    for module, name in originals:
        setattr(json if module == "json" else fast_json, name, recorder(module, name))
    json.JSONEncoder.encode = recording_encode  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        for (module, name), function in originals.items():
            setattr(json if module == "json" else fast_json, name, function)
        json.JSONEncoder.encode = encode  # type: ignore[method-assign]


def capture(stream: bool) -> list[Call]:
    """The JSON calls of one request through authz and extproc (after a warm-up, so caches are as in service)."""
    asyncio.run(work_budget._scenario(stream, work_budget._uncounted))
    calls: dict[str, Call] = {}
    with _recording(calls):
        asyncio.run(work_budget._scenario(stream, work_budget._uncounted))
    return list(calls.values())


def _before(call: Call) -> Callable[[], Any]:
    """The standard library's way: as the site calls it, or as it did before fast_json."""
    if call.kind == "encode":
        encoder, value = call.args
        return lambda: encoder.encode(value)
    if call.kind in ("loads", "fast.loads", "fast.parse"):
        text, kwargs = call.args[0], (call.kwargs if call.kind == "loads" else {})
        return lambda: json.loads(text, **kwargs)
    value, kwargs = call.args[0], call.kwargs if call.kind == "dumps" else {"ensure_ascii": False,
                                                                              "separators": (",", ":")}
    return lambda: json.dumps(value, **kwargs)


def _now(call: Call) -> Callable[[], Any]:
    """The site's way now (fast_json), or orjson alone where fast_json is not applied."""
    if call.kind.startswith("fast."):
        function = getattr(fast_json, call.kind[5:])
        return lambda: function(*call.args)
    if call.kind == "loads":
        text = call.args[0]
        return lambda: orjson.loads(text)
    value = call.args[1] if call.kind == "encode" else call.args[0]
    option = orjson.OPT_SORT_KEYS if call.kwargs.get("sort_keys") else 0
    return lambda: orjson.dumps(value, option=option).decode()


def _time(function: Callable[[], Any], repeats: int) -> float:
    """Best µs per call of ``repeats`` rounds (the least disturbed by the neighbours of a shared machine)."""
    number = max(1, int(0.02 / max(timeit.timeit(function, number=1), 1e-7)))
    return min(timeit.repeat(function, number=number, repeat=repeats)) / number * 1e6


def _service(site: str) -> str:
    return {"authz/": "authz", "extproc/": "extproc"}.get(site.split("/")[0] + "/", "both")


def _settler_call(calls: list[Call]) -> Call | None:
    """The settler decodes each usage event extproc encoded (``UsageEvent.decode``; the standard library's: with
    fast_json's check, orjson saved under 1 µs there)."""
    for call in calls:
        if "usage_event.py" in call.site and call.kind == "fast.dumps":
            event = json.dumps(call.args[0], separators=(",", ":"))
            return Call("money/usage_event.py decode (settler)", "loads", (event,), {}, 1)
    return None


def _report(title: str, calls: list[Call], repeats: int) -> None:
    print(f"\n{title}\n  {'call site':<56} {'n':>2} {'before µs':>9} {'now µs':>8} {'saved µs':>8}")
    saved: dict[str, float] = collections.defaultdict(float)
    for call in calls:
        before, now = _time(_before(call), repeats), _time(_now(call), repeats)
        applied = call.kind.startswith("fast.")
        if applied:
            saved[_where(call.site)] += (before - now) * call.count
        print(f"  {call.kind + ' ' + call.site:<56} {call.count:>2} {before:9.2f} {now:8.2f} "
              f"{(before - now) * call.count:8.2f}{'' if applied else '  (orjson alone: not applied)'}")
    print("  saved per request where applied, µs: "
          + ", ".join(f"{where} {value:.1f}" for where, value in sorted(saved.items())))


def _where(site: str) -> str:
    if "(settler)" in site:
        return "settler"
    if site.startswith(("protocols/request_body", "authz/", "lime/directory", "money/quota")) \
            or "to_metadata" in site or "encode_prices" in site:
        return "authz"
    return "extproc"


def _large(calls: list[Call], size: int) -> list[Call]:
    """The sites whose input is the request body, given an agent's body of ``size`` bytes instead."""
    body: dict[str, Any] = {"model": work_budget.MODEL, "messages": [
        {"role": "system", "content": "You are a coding agent."},
        {"role": "user", "content": "Here is the repository:\n" + "def f(x):\n    return x * 2  # é\n" * (size // 34)}]}
    raw = json.dumps(body).encode()
    out = []
    for call in calls:
        if "request_body.py" in call.site:
            out.append(Call(call.site, "loads", (raw.decode(),), call.kwargs, 1))
        elif "rewrite.py" in call.site and call.kind == "fast.parse":
            out.append(Call(call.site, "fast.parse", (raw,), {}, 1))
        elif "rewrite.py" in call.site and call.kind == "fast.dumps":
            out.append(Call(call.site, "fast.dumps", (body,), {}, 1))
    return out


class _Timed:
    """The work budget's blocks (authz's ``Check``, extproc's ``Process``), timed instead of counted."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    @contextmanager
    def __call__(self) -> Iterator[None]:
        started = time.perf_counter()
        yield
        self.seconds.append(time.perf_counter() - started)


@contextmanager
def _stdlib_only() -> Iterator[None]:
    """fast_json declining everything: every site takes its standard-library path, as before orjson."""
    parse, dumps = fast_json.parse, fast_json.dumps
    fast_json.parse, fast_json.dumps = (lambda data: fast_json.REFUSED), (lambda value: None)
    loads = fast_json.loads
    fast_json.loads = lambda data: json.loads(data)
    try:
        yield
    finally:
        fast_json.parse, fast_json.dumps, fast_json.loads = parse, dumps, loads


def _per_request(rounds: int) -> None:
    """µs of authz's Check and extproc's Process per chat request, stdlib and orjson taking turns."""
    samples: dict[str, list[float]] = {"stdlib": [], "orjson": []}
    authz: dict[str, list[float]] = {"stdlib": [], "orjson": []}
    for _ in range(rounds):
        for mode in samples:
            timed = _Timed()
            with _stdlib_only() if mode == "stdlib" else contextlib.nullcontext():
                asyncio.run(work_budget._scenario(False, timed))
            authz[mode].append(timed.seconds[0])
            samples[mode].append(timed.seconds[1])
    print("\nper chat request, the work budget's in process (median of "
          f"{rounds}), µs: authz Check / extproc Process")
    for mode in samples:
        check, process = statistics.median(authz[mode]) * 1e6, statistics.median(samples[mode]) * 1e6
        print(f"  {mode:<7} {check:7.1f} / {process:7.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.micro_json", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7, help="timing rounds per call; the best is shown")
    parser.add_argument("--requests", type=int, default=400, help="requests per mode for the per-request timing")
    args = parser.parse_args(argv)
    _per_request(args.requests)
    print(f"µs per call, Python {sys.version.split()[0]}, orjson {orjson.__version__}; n = calls per request")
    chat = capture(stream=False)
    settler = _settler_call(chat)
    _report("non-streamed chat completion (the work budget's)", chat + ([settler] if settler else []), args.repeats)
    _report("stream (the work budget's, 15 events)", capture(stream=True), args.repeats)
    _report("the body's sites, an agent's 256 KiB body", _large(chat, 256 * 1024), args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
