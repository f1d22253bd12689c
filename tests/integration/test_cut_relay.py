"""Envoy's cut reports between two processes of a pool, over the real Redis (extproc/cut_relay.py): a report one
process receives reaches the stream the other reads, whichever comes first, also when the other was not listening
at the time; and a Redis that is not there costs only the relay."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import redis.asyncio as aioredis

from extproc.cut_relay import CutRelay
from extproc.stream_cuts import CUT_BY_CLIENT, CUT_BY_UPSTREAM, CutReports
from lime.connections import open_redis
from lime.devstack.embedded import EmbeddedRedis, free_port
from lime.settings import Settings

REDIS_DB = 6
#: Well under a second, which is the point of the relay (the fallback is 30 s).
PROMPTLY = 1.0


@dataclass
class Process:
    """One extproc process's side of the relay: its reports, its relay, and its Redis client."""

    name: str
    reports: CutReports
    relay: CutRelay
    redis: aioredis.Redis
    task: asyncio.Task[None] | None = None

    async def listen(self) -> None:
        self.task = asyncio.create_task(self.relay.run())
        await asyncio.wait_for(self.relay.listening.wait(), 5)


@contextlib.asynccontextmanager
async def process(url: str, channel: str, name: str) -> AsyncIterator[Process]:
    # As extproc opens Redis (lime.connections), each process its own client, named to be found in CLIENT LIST.
    async with open_redis(Settings(redis_url=f"{url}?client_name={name}")) as redis:
        reports = CutReports()
        one = Process(name, reports, CutRelay(redis, reports, channel=channel), redis)
        try:
            yield one
        finally:
            if one.task is not None:
                one.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await one.task
            await one.relay.drain()


@pytest.fixture
async def pair(redis_server: EmbeddedRedis) -> AsyncIterator[tuple[Process, Process]]:
    url = f"redis://{redis_server.host}:{redis_server.port}/{REDIS_DB}"
    channel, tag = f"test:cuts:{uuid.uuid4().hex}", uuid.uuid4().hex[:8]
    async with process(url, channel, f"told-{tag}") as told, process(url, channel, f"reader-{tag}") as reader:
        yield told, reader


async def test_a_report_reaches_the_stream_another_process_is_already_waiting_on(
        pair: tuple[Process, Process]) -> None:
    told, reader = pair
    await told.listen()
    await reader.listen()
    waiting = asyncio.create_task(reader.reports.wait("r1", patience=30))
    await asyncio.sleep(0.05)
    started = time.monotonic()
    told.relay.report("r1", CUT_BY_CLIENT)
    assert await asyncio.wait_for(waiting, PROMPTLY) == CUT_BY_CLIENT
    assert time.monotonic() - started < PROMPTLY


async def test_a_report_that_comes_before_the_other_process_waits_is_kept_there(
        pair: tuple[Process, Process]) -> None:
    told, reader = pair
    await told.listen()
    await reader.listen()
    told.relay.report("r1", CUT_BY_UPSTREAM)
    await asyncio.sleep(0.3)  # the message arrives and is kept
    assert await reader.reports.wait("r1", patience=0.01) == CUT_BY_UPSTREAM


async def test_a_process_that_was_not_listening_finds_the_report_when_it_subscribes(
        pair: tuple[Process, Process]) -> None:
    told, reader = pair
    await told.listen()
    waiting = asyncio.create_task(reader.reports.wait("r1", patience=30))
    await asyncio.sleep(0.05)
    told.relay.report("r1", CUT_BY_CLIENT)  # published while the reader does not listen yet: kept under its key
    await told.relay.drain()
    await reader.listen()
    assert await asyncio.wait_for(waiting, PROMPTLY) == CUT_BY_CLIENT


async def test_a_subscription_that_drops_is_made_again_and_catches_up(pair: tuple[Process, Process]) -> None:
    told, reader = pair
    await told.listen()
    await reader.listen()
    waiting = asyncio.create_task(reader.reports.wait("r1", patience=30))
    await asyncio.sleep(0.05)
    clients = await told.redis.client_list(_type="pubsub")
    ids = [client["id"] for client in clients if client["name"] == reader.name]
    assert ids, clients
    for client_id in ids:
        await told.redis.client_kill_filter(_id=client_id)
    told.relay.report("r1", CUT_BY_CLIENT)  # the reader may or may not be subscribed again yet
    assert await asyncio.wait_for(waiting, 10) == CUT_BY_CLIENT


async def test_without_redis_a_process_goes_on_and_its_streams_wait_as_before() -> None:
    async with process(f"redis://127.0.0.1:{free_port()}/0", "test:cuts:nowhere", "alone") as alone:
        alone.task = asyncio.create_task(alone.relay.run())
        alone.relay.report("r1", CUT_BY_CLIENT)  # nobody waits here: not relayed, but kept for this process
        await alone.relay.drain()
        assert await alone.reports.wait("r1", patience=0.01) == CUT_BY_CLIENT
        assert await alone.reports.wait("r2", patience=0.3) is None  # reported elsewhere: the old patience
        await asyncio.sleep(0.5)
        assert not alone.task.done() and not alone.relay.listening.is_set()
