"""The drain of a stopping server (lime/serving.py): done only after a quiet moment, never while a call runs."""

from __future__ import annotations

import asyncio

from lime.serving import InFlight


async def call(in_flight: InFlight, after: float, lasting: float) -> None:
    await asyncio.sleep(after)
    with in_flight:
        await asyncio.sleep(lasting)


async def test_a_call_that_begins_just_after_an_idle_moment_is_waited_for() -> None:
    in_flight = InFlight()
    late = asyncio.create_task(call(in_flight, after=0.05, lasting=0.2))
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await in_flight.wait_quiet(quiet=0.1, patience=5)
    assert late.done()  # idle at the start did not count: the call that came 50 ms later ran to its end first
    assert loop.time() - started >= 0.25


async def test_a_server_with_nothing_to_do_is_done_after_the_quiet_time() -> None:
    in_flight = InFlight()
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await in_flight.wait_quiet(quiet=0.05, patience=5)
    assert 0.05 <= loop.time() - started < 1


async def test_patience_bounds_a_call_that_does_not_end() -> None:
    in_flight = InFlight()
    endless = asyncio.create_task(call(in_flight, after=0, lasting=60))
    await asyncio.sleep(0)
    assert not await in_flight.wait_quiet(quiet=0.05, patience=0.2)
    endless.cancel()
