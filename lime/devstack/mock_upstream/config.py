"""The mock's settings, and the request headers that override them for one request.

Headers rather than body fields, so a test can steer the mock through a gateway that forwards the body it
was given and adds nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CACHED_HEADER",
    "CHUNKS_HEADER",
    "CONTENT_TYPE_HEADER",
    "DELAY_HEADER",
    "DROP_HEADER",
    "ENCODINGS",
    "ENCODING_HEADER",
    "ERROR_BODY_HEADER",
    "ERROR_HEADER",
    "INVALID_HEADER",
    "REPLAY_HEADER",
    "SPLIT_HEADER",
    "STALL_HEADER",
    "STATUS_HEADER",
    "TAIL_DELAY_HEADER",
    "BadOverride",
    "MockConfig",
    "Overrides",
    "resolve_overrides",
]

CHUNKS_HEADER = "x-mock-chunks"
DELAY_HEADER = "x-mock-delay-ms"
STATUS_HEADER = "x-mock-status"
#: Answer a real provider's recorded error (a name in errors.RECORDED_ERRORS): its status and body, byte for byte.
ERROR_BODY_HEADER = "x-mock-error-body"
#: Prompt tokens to report as read from the provider's prompt cache (capped at the prompt's size).
CACHED_HEADER = "x-mock-cached-tokens"
#: Streams: after this many events, cut the connection without ending the response (a crashed upstream).
DROP_HEADER = "x-mock-drop-after"
#: Streams: after this many events, send the provider's in-stream error event and end (an overloaded upstream).
ERROR_HEADER = "x-mock-error-after"
#: An answer that is not valid in its protocol, as from a broken upstream or a proxy in front of it: streams
#: send this many events (of those they have), then one whose data is not JSON, and end there cleanly; JSON
#: answers are a 200 whose body is cut after this many bytes.
INVALID_HEADER = "x-mock-invalid-body"
#: An upstream that hangs: streams send this many events, then nothing more, with the connection left open until
#: the client (a proxy's idle timeout) closes it; JSON answers send nothing at all. At most MAX_DELAY_MS.
STALL_HEADER = "x-mock-stall-after"

#: An upstream that ignores `accept-encoding: identity`: the answer comes compressed with this coding (gzip,
#: deflate, br, zstd; streams flush each event, as a compressing proxy does), or marked with an unknown one
#: (`compress`: the body is sent as is, so a gateway that cannot decode it must pass it on untouched).
ENCODING_HEADER = "x-mock-content-encoding"
ENCODINGS = frozenset({"gzip", "deflate", "br", "zstd", "compress"})
#: Answer with a real provider's recorded body or stream, by its file name in the mock's folder of recordings
#: (tests/fixtures/providers), its model fields naming the request's model (replay.py).
REPLAY_HEADER = "x-mock-replay"
#: Streams: each event goes out in two writes this many milliseconds apart, cut in its middle (a proxy or a TCP
#: segment boundary can split an event anywhere; whoever edits the stream must hold the first half).
SPLIT_HEADER = "x-mock-split-ms"
#: Streams: a pause this many milliseconds long before the last two events, the tail that carries the final usage
#: and the end (chat's usage chunk and [DONE], Anthropic's message_delta and message_stop).
TAIL_DELAY_HEADER = "x-mock-tail-delay-ms"
#: A successful JSON answer sent under this content type instead (a relay's HTML page, a proxy's text/plain).
CONTENT_TYPE_HEADER = "x-mock-content-type"

# Bounds that keep a typo from making the mock stream for hours.
MAX_CHUNKS = 100_000
MAX_DELAY_MS = 600_000


@dataclass(frozen=True)
class MockConfig:
    """Defaults for every request: text pieces per reply, milliseconds between streamed events, and the folder of
    recorded answers ``x-mock-replay`` names (``None``: none to replay)."""

    chunks: int = 8
    delay_ms: int = 0
    replay_dir: Path | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.chunks <= MAX_CHUNKS:
            raise ValueError(f"chunks must be within 0..{MAX_CHUNKS}, got {self.chunks}")
        if not 0 <= self.delay_ms <= MAX_DELAY_MS:
            raise ValueError(f"delay_ms must be within 0..{MAX_DELAY_MS}, got {self.delay_ms}")


@dataclass(frozen=True)
class Overrides:
    """What one request asked for; ``status`` is an error status to answer with instead, or ``None``."""

    chunks: int
    delay_ms: int
    status: int | None
    cached_tokens: int = 0
    drop_after: int | None = None
    error_after: int | None = None
    invalid_after: int | None = None
    stall_after: int | None = None
    content_encoding: str | None = None
    content_type: str | None = None
    error_body: str | None = None
    replay: str | None = None
    split_ms: int | None = None
    tail_delay_ms: int | None = None


class BadOverride(ValueError):
    """An ``x-mock-*`` header that is not a number in range; the mock answers 400."""


def _int_header(headers: Mapping[str, str], name: str, low: int, high: int) -> int | None:
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        raise BadOverride(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise BadOverride(f"{name} must be within {low}..{high}, got {value}")
    return value


def resolve_overrides(headers: Mapping[str, str], config: MockConfig) -> Overrides:
    """Merge the request's ``x-mock-*`` headers (case-insensitive mapping) over ``config``."""
    chunks = _int_header(headers, CHUNKS_HEADER, 0, MAX_CHUNKS)
    delay_ms = _int_header(headers, DELAY_HEADER, 0, MAX_DELAY_MS)
    status = _int_header(headers, STATUS_HEADER, 200, 599)
    if status is not None and status < 400:
        status = None  # a success status is the normal answer (a proxy may set the header on every request)
    cached = _int_header(headers, CACHED_HEADER, 0, 10**9)
    return Overrides(
        cached_tokens=cached or 0,
        drop_after=_int_header(headers, DROP_HEADER, 0, MAX_CHUNKS),
        error_after=_int_header(headers, ERROR_HEADER, 0, MAX_CHUNKS),
        invalid_after=_int_header(headers, INVALID_HEADER, 0, 64 * 1024 * 1024),
        stall_after=_int_header(headers, STALL_HEADER, 0, MAX_CHUNKS),
        chunks=config.chunks if chunks is None else chunks,
        delay_ms=config.delay_ms if delay_ms is None else delay_ms,
        status=status,
        content_encoding=_encoding(headers),
        content_type=headers.get(CONTENT_TYPE_HEADER),
        error_body=headers.get(ERROR_BODY_HEADER),
        replay=headers.get(REPLAY_HEADER),
        split_ms=_int_header(headers, SPLIT_HEADER, 0, MAX_DELAY_MS),
        tail_delay_ms=_int_header(headers, TAIL_DELAY_HEADER, 0, MAX_DELAY_MS),
    )


def _encoding(headers: Mapping[str, str]) -> str | None:
    raw = headers.get(ENCODING_HEADER)
    if raw is None:
        return None
    if raw.strip().lower() not in ENCODINGS:
        raise BadOverride(f"{ENCODING_HEADER} must be one of {sorted(ENCODINGS)}, got {raw!r}")
    return raw.strip().lower()
