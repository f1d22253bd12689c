"""Server-sent-event framing as the providers send it: ``event: `` (when named), ``data: `` and a blank line."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["DONE", "dumps", "sse_event"]

#: Chat Completions' terminator. It is not JSON, and only Chat Completions sends it.
DONE = b"data: [DONE]\n\n"


def dumps(value: Any) -> str:
    """Compact JSON, the way the providers put it on the wire."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def sse_event(data: Any, event: str | None = None) -> bytes:
    """One SSE event; ``data`` is JSON-encoded unless it is already a string."""
    payload = data if isinstance(data, str) else dumps(data)
    head = f"event: {event}\n" if event is not None else ""
    return f"{head}data: {payload}\n\n".encode()
