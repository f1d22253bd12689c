"""Server-sent events, sans-IO: bytes in, complete events out, whatever the network's splits.

Only framing and field parsing live here; what an event means belongs to :mod:`lime.protocols.response_tap`. The rules
follow the SSE spec and what real providers send (tests/fixtures/providers/README.md, facts 1-6): lines end in
``\\n``, ``\\r\\n`` or ``\\r``; an event ends at a blank line; ``data:`` loses at most one leading space; lines
starting with ``:`` are comments; a stream may end without the final blank line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["EventFramer", "SSEEvent", "parse_event"]

# A line end followed by another: a blank line, the end of an event. A lone `\r` must not be the first half of a
# `\r\n`, or `\r\n` would count as two line ends.
_EVENT_END = re.compile(rb"(?:\r\n|\r(?!\n)|\n)(?:\r\n|\r(?!\n)|\n)")
_LINE_END = re.compile(rb"\r\n|\r|\n")


class EventFramer:
    """Cuts a byte stream into raw events, each one complete with the blank line that ended it.

    Bytes of an event still in flight are held back until its end arrives; nothing else is delayed.
    """

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, data: bytes) -> list[bytes]:
        held = len(self._pending)
        pending = self._pending + data if held else data
        events: list[bytes] = []
        start = 0
        # What was held had no event end in it: search only where the new bytes can complete one (a line end
        # of up to 2 bytes, twice), so one huge event in tiny chunks costs linear time, not quadratic.
        search_from = max(0, held - 3)
        while True:
            match = _EVENT_END.search(pending, max(start, search_from))
            # A `\r` at the very end may be the start of a `\r\n` still in flight: wait for the next byte.
            if match is None or (match.end() == len(pending) and pending.endswith(b"\r")):
                break
            events.append(pending[start:match.end()])
            start = match.end()
        self._pending = pending[start:]
        return events

    def flush(self) -> bytes:
        """What is left at the end of the stream: an event without its blank line (SDK fixtures end so)."""
        rest, self._pending = self._pending, b""
        return rest

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def pending_bytes(self) -> bytes:
        return self._pending


@dataclass(frozen=True)
class SSEEvent:
    #: The ``event:`` field, or ``None`` when the event has none (OpenAI chat streams send only ``data:``).
    name: str | None
    #: The ``data:`` lines joined by ``\n``; ``None`` when the event had no data line (a comment, a retry hint).
    data: bytes | None


def parse_event(raw: bytes) -> SSEEvent:
    name: str | None = None
    data: list[bytes] = []
    for line in _LINE_END.split(raw):
        if not line or line.startswith(b":"):
            continue
        field, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if field == b"data":
            data.append(value)
        elif field == b"event":
            name = value.decode("utf-8", errors="replace")
    return SSEEvent(name, b"\n".join(data) if data else None)
