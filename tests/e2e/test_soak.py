"""Soak: many concurrent clients for a while, every endpoint, some leaving mid-stream; then nothing failed, the
Python services' memory is flat, and the books agree.

Bounded in time and loopback only: ``LIME_SOAK_SECONDS`` (default 60, so the suite stays fast; a few minutes,
e.g. ``LIME_SOAK_SECONDS=300``, before a release) of traffic from ``CLIENTS`` concurrent asyncio clients, each
sending one request after another, chosen at random among: chat, chat streamed, chat streamed and left after
three chunks, responses, responses streamed, embeddings, messages, messages streamed (some left after four
events) (``test_conservation.one_request``), and the model list. Afterwards:

* no request failed: the clients' cancellations are the only faults injected;
* the resident memory of authz, extproc, the settler and catalog_api at the end is within ``MEMORY_TOLERANCE`` of
  what it was once warmed up (a leak shows as growth with the traffic; noise does not);
* the conservation check of ``test_conservation`` holds over every request of the run.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from dataclasses import dataclass, field

import anthropic
import httpx2
import openai
import pytest

from tests.e2e.conftest import Gateway, TenantAccess, run_sync
from tests.e2e.process_memory import MIB, PYTHON_SERVICES, service_rss
from tests.e2e.test_conservation import Sent, assert_conserved, one_request

SOAK_SECONDS = float(os.environ.get("LIME_SOAK_SECONDS", "60"))
#: Modest: the suite's machine has two cores for the clients, Envoy, the services, PostgreSQL and Redis.
CLIENTS = 12
#: Memory is compared from here on: by then every code path has run many times (imports, caches, pools).
WARM_UP_SECONDS = min(20.0, SOAK_SECONDS / 3)
SAMPLE_SECONDS = 2.0
START_POINTS = 10**13
#: How far a service's resident memory may move from its warmed-up level (the highest of the first three samples
#: after WARM_UP_SECONDS) to the end (the highest of the last three). Python's allocator alone moves it by a few
#: hundred KiB. A leak grows with the traffic, so the longer the soak the smaller the leak it catches: over the
#: ~10,000 requests of the default 60 s on a two-core machine, about 400 bytes a request. Measured over 300 s
#: (65,165 requests): authz +0.3 MiB, extproc +0.8, the settler +0.3, catalog_api 0. extproc on grpc.aio grew by
#: ~150 bytes a request and failed this over 600 s; it runs on grpclib since (docs/failure-modes.md, "Load").
MEMORY_TOLERANCE = 4 * MIB


@dataclass
class Run:
    sent: list[Sent] = field(default_factory=list)
    listed: int = 0
    #: (seconds since the start, what was sent, the error)
    errors: list[tuple[float, str, BaseException]] = field(default_factory=list)
    #: (seconds since the start, {service: RSS bytes})
    memory: list[tuple[float, dict[str, int]]] = field(default_factory=list)
    #: The longest the clients' event loop was kept from running (their own CPU, on a shared machine).
    loop_lag: float = 0.0


async def soak(gateway: Gateway, access: TenantAccess, seconds: float) -> Run:
    run = Run()
    started = time.monotonic()
    stop = started + seconds
    rng = random.Random(os.environ.get("LIME_SOAK_SEED", "lime"))
    # Long-lived clients, as applications hold them. Generous timeouts: on a busy two-core machine the clients'
    # own event loop can be kept waiting for seconds, which is no fault of the gateway's.
    timeout = httpx2.Timeout(300, connect=60)

    async def client() -> None:
        oai = openai.AsyncOpenAI(base_url=gateway.base_url, api_key=access.key, default_headers=access.headers,
                                 max_retries=0, timeout=timeout)
        claude = anthropic.AsyncAnthropic(base_url=gateway.origin, api_key=access.key,
                                          default_headers=access.headers, max_retries=0, timeout=timeout)
        try:
            while time.monotonic() < stop:
                n = rng.randrange(10**9)
                what = "models" if rng.random() < 0.05 else f"request {n} (kind {n % 8})"
                try:
                    if what == "models":
                        assert [model.id async for model in oai.models.list()]
                        run.listed += 1
                    else:
                        run.sent.append(await one_request(gateway, access, n, (oai, claude)))
                except Exception as error:  # counted, and the client goes on, so one failure does not hide others
                    run.errors.append((time.monotonic() - started, what, error))
        finally:
            await oai.close()
            await claude.close()

    def sample_memory() -> None:
        run.memory.append((time.monotonic() - started,
                           {name: service_rss(gateway, name) for name in PYTHON_SERVICES}))

    async def watch() -> None:
        while time.monotonic() < stop:
            sample_memory()
            before = time.monotonic()
            await asyncio.sleep(SAMPLE_SECONDS)
            run.loop_lag = max(run.loop_lag, time.monotonic() - before - SAMPLE_SECONDS)

    await asyncio.gather(watch(), *(client() for _ in range(CLIENTS)))
    sample_memory()
    return run


@pytest.mark.timeout(SOAK_SECONDS + 240)  # the run, then checking its books
def test_soak(gateway: Gateway) -> None:
    access = gateway.new_tenant(["chat-a", "chat-b", "claude", "embed"], points=START_POINTS)
    run = run_sync(soak(gateway, access, SOAK_SECONDS))
    print(f"soak: {SOAK_SECONDS:.0f} s, {len(run.sent)} requests ({sum(s.abandoned for s in run.sent)} left "
          f"mid-stream) and {run.listed} model lists; RSS in MiB, warmed up -> end:")
    print(f"  the clients' event loop was held up for at most {run.loop_lag:.1f} s at a time")
    failures = [f"{at:.0f} s, {what}: {error!r} ({error.__cause__!r})" for at, what, error in run.errors[:10]]
    assert not run.errors, f"{len(run.errors)} of {len(run.sent) + len(run.errors)} requests failed: {failures}"
    # The run meant something: every endpoint was used and clients did leave.
    assert {s.endpoint for s in run.sent} == {"chat", "responses", "embeddings", "messages"}
    assert any(s.abandoned for s in run.sent) and run.listed

    warmed = [sample for at, sample in run.memory if at >= WARM_UP_SECONDS]
    assert len(warmed) >= 6, "too few memory samples after the warm-up"
    grew: dict[str, float] = {}
    for name in PYTHON_SERVICES:
        early = max(sample[name] for sample in warmed[:3])
        late = max(sample[name] for sample in warmed[-3:])
        print(f"  {name}: {early / MIB:.1f} -> {late / MIB:.1f} "
              f"({[round(sample[name] / MIB, 1) for sample in warmed]})")
        if late - early > MEMORY_TOLERANCE:
            grew[name] = (late - early) / MIB
    assert not grew, f"memory grew by more than {MEMORY_TOLERANCE / MIB:.0f} MiB (MiB): {grew}"

    cut = assert_conserved(gateway, access, run.sent, START_POINTS, timeout=60)
    print(f"  books agree; {cut} streams were really cut off by their client")
