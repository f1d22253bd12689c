"""Clients that strain the gateway without breaking a rule: one that reads slowly, and many streams at once.

(A client that leaves mid-stream is test_billing.py::test_a_client_that_leaves_mid_stream_pays_for_what_it_got.)
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx2
import openai

from lime.catalog import Limits
from tests.e2e.conftest import Gateway, TenantAccess, run_sync
from tests.e2e.process_memory import MIB, service_rss
from tests.e2e.test_billing import record
from tests.e2e.test_conservation import books
from tests.e2e.test_fault_services import held_and_inflight

MESSAGES: Any = [{"role": "user", "content": "hi"}]

CONCURRENT = 200
PIECES = 30


def test_a_slow_reader_gets_every_event_in_order_and_pays_for_the_whole_answer(gateway: Gateway) -> None:
    access = gateway.new_tenant(["chat-a"], points=10**9)
    raw = gateway.openai(access).chat.completions.with_raw_response.create(
        model="chat-a", messages=MESSAGES, stream=True, extra_headers={"x-mock-chunks": "200"})
    request_id = raw.headers["x-request-id"]
    pieces: list[str] = []
    for chunk in raw.parse():
        pieces.extend(choice.delta.content or "" for choice in chunk.choices)
        time.sleep(0.02)  # a reader far slower than the upstream, which is done long before it
    # The upstream wrote its answer in no time; Envoy held it for the client (flow control would pause the
    # upstream past per_connection_buffer_limit_bytes) and extproc saw it as any other answer.
    assert gateway.mock_request(request_id)["completed"]
    texts = [piece for piece in pieces if piece]
    assert len(texts) == 200
    # The mock's answer is its canned text repeated in order: what arrived is that text, nothing lost or doubled.
    whole = gateway.openai(access).chat.completions.create(model="chat-a", messages=MESSAGES,
                                                           extra_headers={"x-mock-chunks": "200"})
    assert "".join(texts) == whole.choices[0].message.content
    row = record(gateway, request_id)
    assert row["outcome"] == "complete" and not row["estimated"] and row["output_tokens"] == 200


async def stream_many(gateway: Gateway, access: TenantAccess, at_peak: Any) -> list[tuple[str, int]]:
    """``CONCURRENT`` streams open at once: each reads its first event, then all wait until every one has, and
    ``at_peak`` runs then; returns each stream's request id and text pieces."""
    barrier = asyncio.Barrier(CONCURRENT + 1)
    limits = httpx2.Limits(max_connections=CONCURRENT + 10, max_keepalive_connections=CONCURRENT + 10)
    async with httpx2.AsyncClient(limits=limits, timeout=120) as http:
        client = openai.AsyncOpenAI(base_url=gateway.base_url, api_key=access.key, max_retries=0,
                                    default_headers=access.headers, http_client=http)

        async def one() -> tuple[str, int]:
            raw = await client.chat.completions.with_raw_response.create(
                model="chat-a", messages=MESSAGES, stream=True,
                extra_headers={"x-mock-chunks": str(PIECES), "x-mock-delay-ms": "100"})
            texts = 0
            first = True
            async for chunk in raw.parse():
                texts += sum(1 for choice in chunk.choices if choice.delta.content)
                if first:
                    first = False
                    await barrier.wait()
            return raw.headers["x-request-id"], texts

        async def watch() -> None:
            await barrier.wait()
            await asyncio.to_thread(at_peak)

        async with asyncio.timeout(180):
            results = await asyncio.gather(*(one() for _ in range(CONCURRENT)), watch())
    return [result for result in results if result is not None]


#: What one open stream may cost extproc at the peak: its gRPC call, its tap, and the events it passed on (kept
#: to count an answer that is cut off: raw up to 64 KiB, then folded to their text; these 30-piece answers never
#: reach that). Measured: about 25 KiB each.
PER_STREAM = 80 * 1024
#: Python's allocator keeps arenas it has used, so RSS moves by a few MiB between identical rounds; more than this
#: after a second round of the same 200 streams would be state kept per request (about 40 KiB each).
ROUND_TOLERANCE = 8 * MIB


def test_many_concurrent_streams_are_all_served_whole_and_extproc_memory_stays_bounded(gateway: Gateway) -> None:
    access = gateway.new_tenant(["chat-a"], points=10**12, limits=Limits(concurrency=CONCURRENT))
    peaks: list[tuple[int, tuple[int, int]]] = []

    def at_peak() -> None:
        peaks.append((service_rss(gateway, "extproc"), held_and_inflight(gateway, access.tenant_id)))

    baseline = service_rss(gateway, "extproc")
    after: list[int] = []
    sent: set[str] = set()
    for _ in range(2):
        streams = run_sync(stream_many(gateway, access, at_peak))
        assert len(streams) == CONCURRENT
        assert [texts for _, texts in streams] == [PIECES] * CONCURRENT  # every stream got its whole answer
        sent.update(request_id for request_id, _ in streams)
        rows = settled(gateway, access, len(sent))
        assert {row["request_id"] for row in rows} == sent
        assert all(row["outcome"] == "complete" and row["output_tokens"] == PIECES for row in rows)
        assert held_and_inflight(gateway, access.tenant_id) == (0, 0)
        after.append(service_rss(gateway, "extproc"))
    # Every stream was open in extproc at the peak: reserved, not yet settled.
    assert [inflight for _, (_, inflight) in peaks] == [CONCURRENT, CONCURRENT]
    report = (f"extproc RSS: baseline {baseline / MIB:.1f} MiB, at the peaks {[round(p / MIB, 1) for p, _ in peaks]}, "
              f"after each round {[round(a / MIB, 1) for a in after]}")
    print(report)
    assert all(peak - baseline <= CONCURRENT * PER_STREAM for peak, _ in peaks), report
    assert after[1] - after[0] <= ROUND_TOLERANCE, report


def settled(gateway: Gateway, access: TenantAccess, count: int) -> list[dict[str, Any]]:
    """The tenant's usage records, once there are ``count`` of them."""
    deadline = time.monotonic() + 60
    while True:
        _, rows, _ = run_sync(books(gateway, access.tenant_id))
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)
