"""The record of what reached the mock, which tests read back through ``GET /_mock/requests``.

An entry is added when the mock has decided its answer and before it sends the first byte, so a client that
has its response can always find the entry. ``completed`` turns true once the whole body has been written;
it stays false for a stream the client abandoned, whose usage the client never saw.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypedDict

__all__ = ["LoggedRequest", "RequestLog", "headers_dict"]


class LoggedRequest(TypedDict):
    path: str
    method: str
    model: str | None
    stream: bool
    #: Every header as received, names lower-cased; repeated headers joined with ", ".
    headers: dict[str, str]
    #: The parsed JSON body, or ``None`` when it was not JSON.
    body: Any
    request_id: str | None
    status: int
    #: The usage object the mock reported (in the provider's own field names), or ``None`` for an error.
    usage: dict[str, Any] | None
    completed: bool
    #: The answer's body as the mock wrote it (before any content-encoding; a stream's every event), so a test can
    #: compare it byte for byte with what a client got; ``None`` for an error.
    answer: str | None


def headers_dict(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Lower-cased header names; repeats are joined the way HTTP allows a list header to be folded."""
    merged: dict[str, str] = {}
    for name, value in items:
        key = name.lower()
        merged[key] = f"{merged[key]}, {value}" if key in merged else value
    return merged


class RequestLog:
    """Requests in arrival order. The mock runs on one event loop, so no lock is needed."""

    def __init__(self) -> None:
        self._entries: list[LoggedRequest] = []

    def add(self, entry: LoggedRequest) -> None:
        self._entries.append(entry)

    def entries(self) -> list[LoggedRequest]:
        return list(self._entries)

    def clear(self) -> int:
        count = len(self._entries)
        self._entries.clear()
        return count

    def __len__(self) -> int:
        return len(self._entries)
