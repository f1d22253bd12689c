"""Envoy's cut reports between the processes of a pool (extproc/cut_relay.py), without Redis: what is published and
when, what a received message does, and that a Redis that fails only costs the relay (tests/integration has the real
Redis)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
import redis.asyncio as aioredis
from hypothesis import given
from hypothesis import strategies as st

from extproc.cut_relay import ENDINGS, KEY_PREFIX, RELAY_FAILURES, CutRelay, decode, encode
from extproc.stream_cuts import CUT_BY_CLIENT, CUT_BY_UPSTREAM, TIMED_OUT, CutReports


class _Pipeline:
    def __init__(self, redis: _Redis) -> None:
        self._redis = redis
        self._queued: list[tuple[Any, ...]] = []

    async def __aenter__(self) -> _Pipeline:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def set(self, key: str, value: str, ex: int) -> None:
        self._queued.append(("set", key, value, ex))

    def publish(self, channel: str, message: str) -> None:
        self._queued.append(("publish", channel, message))

    async def execute(self) -> None:
        if self._redis.down:
            raise aioredis.ConnectionError("Connection refused")
        self._redis.sent.extend(self._queued)


class _Redis:
    """What the relay asks of Redis when it publishes."""

    def __init__(self, *, down: bool = False) -> None:
        self.down = down
        self.sent: list[tuple[Any, ...]] = []

    def pipeline(self, transaction: bool = True) -> _Pipeline:
        return _Pipeline(self)


def relay_on(redis: _Redis, reports: CutReports) -> CutRelay:
    return CutRelay(cast(aioredis.Redis, redis), reports, channel="test:cuts")


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


@given(request_id=st.text(min_size=1), name=st.sampled_from(sorted(ENDINGS)), origin=st.text())
def test_a_report_reads_back_as_it_was_written(request_id: str, name: str, origin: str) -> None:
    assert decode(encode(origin, request_id, ENDINGS[name])) == (origin, request_id, ENDINGS[name])
    assert decode(encode(origin, request_id, ENDINGS[name]).encode()) == (origin, request_id, ENDINGS[name])


@pytest.mark.parametrize("data", [b"", b"not json", b"[]", b"{}", b'{"from": "a", "id": "r1", "ending": "eaten"}',
                                  b'{"from": "a", "id": "", "ending": "client"}',
                                  b'{"from": 1, "id": "r1", "ending": "client"}',
                                  b'{"from": "a", "id": ["r1"], "ending": "client"}', b"\xff"])
def test_anything_else_on_the_channel_is_not_a_report(data: bytes) -> None:
    assert decode(data) is None


async def test_a_report_a_stream_here_waits_for_goes_no_further() -> None:
    reports, redis = CutReports(), _Redis()
    relay = relay_on(redis, reports)
    waiting = asyncio.create_task(reports.wait("r1", patience=5))
    await settle()
    assert reports.waiting() == ["r1"]
    relay.report("r1", CUT_BY_CLIENT)
    assert await waiting == CUT_BY_CLIENT
    await settle()
    assert redis.sent == []  # a request read by the process Envoy told costs Redis nothing


async def test_a_report_nobody_here_waits_for_is_kept_and_published() -> None:
    reports, redis = CutReports(), _Redis()
    relay = relay_on(redis, reports)
    relay.report("r1", CUT_BY_UPSTREAM)
    await settle()
    assert redis.sent[0] == ("set", KEY_PREFIX + "r1", "upstream", 30)
    assert redis.sent[1][:2] == ("publish", "test:cuts")
    assert decode(redis.sent[1][2])[1:] == ("r1", CUT_BY_UPSTREAM)  # type: ignore[index]
    # A stream of this process that asks later (one counted once it ended) finds it here too.
    assert await reports.wait("r1", patience=0.01) == CUT_BY_UPSTREAM


async def test_a_report_from_another_process_reaches_the_stream_waiting_here() -> None:
    reports = CutReports()
    relay = relay_on(_Redis(), reports)
    waiting = asyncio.create_task(reports.wait("r1", patience=5))
    await settle()
    relay.received(encode("another process", "r1", TIMED_OUT).encode())
    assert await waiting == TIMED_OUT


async def test_a_report_from_another_process_before_its_stream_asks_is_kept() -> None:
    reports = CutReports()
    relay_on(_Redis(), reports).received(encode("another process", "r1", CUT_BY_CLIENT).encode())
    assert await reports.wait("r1", patience=0.01) == CUT_BY_CLIENT


async def test_a_process_ignores_its_own_reports_coming_back() -> None:
    reports, redis = CutReports(), _Redis()
    relay = relay_on(redis, reports)
    relay.report("r1", CUT_BY_CLIENT)
    await settle()
    assert await reports.wait("r1", patience=0.01) == CUT_BY_CLIENT
    relay.received(redis.sent[1][2])
    assert len(reports) == 0  # not kept a second time


async def test_garbage_on_the_channel_changes_nothing() -> None:
    reports = CutReports()
    relay_on(_Redis(), reports).received(b"garbage")
    assert len(reports) == 0


async def test_with_redis_down_a_report_stays_here_and_is_counted_as_not_relayed() -> None:
    reports = CutReports()
    relay = relay_on(_Redis(down=True), reports)
    before = RELAY_FAILURES._value.get()
    relay.report("r1", CUT_BY_CLIENT)
    await relay.drain()
    assert RELAY_FAILURES._value.get() == before + 1
    assert await reports.wait("r1", patience=0.01) == CUT_BY_CLIENT
