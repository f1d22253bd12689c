"""extproc's HTTP/2 writes: frames written in one loop turn leave in one system call, in order, nothing lost."""

from __future__ import annotations

import asyncio
from typing import Any

from lime.batched_writes import BatchedWrites, BatchingServer


class Transport:
    """The parts of an asyncio transport that grpclib and BatchedWrites use."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


async def test_writes_in_one_loop_turn_leave_together_and_in_order() -> None:
    transport = Transport()
    batched = BatchedWrites(transport)  # type: ignore[arg-type]
    for frame in (b"headers", b"message-1", b"message-2", b"trailers"):
        batched.write(frame)
    assert transport.writes == []
    await asyncio.sleep(0)
    assert transport.writes == [b"headersmessage-1message-2trailers"]
    batched.write(b"next")
    await asyncio.sleep(0)
    assert transport.writes[1:] == [b"next"]


async def test_closing_sends_what_is_pending_first() -> None:
    transport = Transport()
    batched = BatchedWrites(transport)  # type: ignore[arg-type]
    batched.write(b"trailers")
    batched.close()
    assert transport.writes == [b"trailers"] and transport.closed
    await asyncio.sleep(0)  # the scheduled flush finds nothing left
    assert transport.writes == [b"trailers"]


async def test_the_server_connections_write_through_batched_writes() -> None:
    """A tripwire on grpclib's internals: the hook BatchingServer uses must still be called for each connection."""
    server = BatchingServer([])
    protocol = server._protocol_factory()
    protocol.connection_made(Transport())  # type: ignore[arg-type]
    assert isinstance(protocol.connection._transport, BatchedWrites)
