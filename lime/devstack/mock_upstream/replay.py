"""Replaying a real provider's recorded answer (``x-mock-replay: <file name>``), so a test sees the usage shapes
the mock does not make itself: cache writes by lifetime, server tool calls, service tiers, audio tokens (the
vendored recordings in tests/fixtures/providers, facts 21-31).

The answer is the file's bytes with one change: every ``"model"`` field names the model the request asked the
upstream for, as a provider echoes it, so a gateway's rewrite of the model id is exercised as on any answer.
Nothing else is touched: not the ids, not the usage, not the whitespace. A ``.sse`` file is a stream (one write per
event), a ``.json`` file a JSON body; the request's ``stream`` must agree with the file.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Recording", "ReplayError", "load_recording"]

#: A recording names its model in ``"model": "..."`` (JSON escapes never occur in model ids).
_MODEL_FIELD = re.compile(rb'("model"\s*:\s*)"[^"\\]*"')
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*\.(json|sse)$")


@dataclass(frozen=True)
class Recording:
    """A recorded ``body`` (JSON) or the ``events`` of a stream, and the last usage object in it (for the log)."""

    stream: bool
    body: bytes = b""
    events: tuple[bytes, ...] = ()
    usage: dict[str, Any] | None = None


class ReplayError(ValueError):
    """No such recording, or one that does not fit the request; the mock answers 400 naming it."""


def load_recording(directory: Path | None, name: str, model: str | None, *, stream: bool) -> Recording:
    if directory is None:
        raise ReplayError("x-mock-replay: this mock has no folder of recordings (--replay-dir)")
    if not _NAME.match(name) or not (directory / name).is_file():
        raise ReplayError(f"x-mock-replay: no recording {name!r} in {directory}")
    if name.endswith(".sse") != stream:
        raise ReplayError(f"x-mock-replay: {name} is {'a stream' if name.endswith('.sse') else 'a JSON body'}, "
                          f"but the request has stream={str(stream).lower()}")
    raw = (directory / name).read_bytes()
    if model is not None:
        named = json.dumps(model).encode()
        raw = _MODEL_FIELD.sub(lambda match: match.group(1) + named, raw)
    if not stream:
        return Recording(False, body=raw, usage=_last_usage([raw]))
    # Events end at a blank line; a recording may lack the last one's (fact 6): it is flushed at the end.
    events = tuple(event + b"\n\n" for event in raw.split(b"\n\n") if event.strip())
    return Recording(True, events=events, usage=_last_usage(events))


def _last_usage(chunks: list[bytes] | tuple[bytes, ...]) -> dict[str, Any] | None:
    found: dict[str, Any] | None = None
    for chunk in chunks:
        for line in chunk.split(b"\n"):
            text = line.removeprefix(b"data:").strip()
            try:
                payload = json.loads(text)
            except ValueError:
                continue
            found = _usage_in(payload) or found
    return found


def _usage_in(payload: Any) -> dict[str, Any] | None:
    """The usage of a body or an event: at its top, or in the ``message`` / ``response`` it carries."""
    if not isinstance(payload, dict):
        return None
    for holder in (payload, payload.get("response"), payload.get("message")):
        if isinstance(holder, dict) and isinstance(holder.get("usage"), dict):
            return dict(holder["usage"])
    return None
