"""The Lua filters and the observing tap around ext_proc: where each must sit, and how the tap must be set.

envoy/envoy.yaml says what each filter does; extproc/stream_modes.py says why streams need them.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from lime.envoy.bootstrap import Problem
from lime.envoy.check.filters import (
    ANSWER_BODY_FILTER,
    ANSWER_HEADERS_FILTER,
    AUTHZ_NAMESPACE,
    EXT_PROC,
    EXTPROC_NAMESPACE,
    STREAM_BYTES_FILTER,
    STREAM_TAP_FILTER,
    Filters,
    filter_path,
    first,
)

__all__ = ["answer_filters"]

#: How long Envoy keeps the observing tap's stream open after the request: ENVOY-NOTES pitfall 7 lost the end of a
#: stream at 1 s with a slow reader; below this, a backlog in extproc could cost a stream its final usage.
_MIN_DEFERRED_CLOSE = timedelta(seconds=5)


def answer_filters(filters: Filters) -> Iterator[Problem]:
    """The two Lua filters around ext_proc that carry an answer read whole (envoy/envoy.yaml says what each does)."""
    ext_proc, headers, body = first(filters, EXT_PROC), first(filters, ANSWER_HEADERS_FILTER), \
        first(filters, ANSWER_BODY_FILTER)
    if ext_proc is None:
        return  # reported by filter_order
    if headers is None or headers[0] > ext_proc[0]:
        yield Problem("http_filters", f"{ANSWER_HEADERS_FILTER} must come before {EXT_PROC} (it runs after it on the "
                      "way out): without it, a non-streamed answer keeps the upstream's headers.")
    if body is None or body[0] < ext_proc[0]:
        yield Problem("http_filters", f"{ANSWER_BODY_FILTER} must come after {EXT_PROC}: without it, a non-streamed "
                      "answer without a body never reaches extproc.")
    stream = first(filters, STREAM_BYTES_FILTER)
    if stream is None or stream[0] > ext_proc[0]:
        yield Problem("http_filters", f"{STREAM_BYTES_FILTER} must come before {EXT_PROC} (it runs after it on the "
                      "way out): without it, a streamed answer keeps the upstream's model id and the usage chunk "
                      "the client did not ask for (extproc/stream_modes.py).")
    tap = first(filters, STREAM_TAP_FILTER)
    if tap is None or tap[0] > ext_proc[0] or (stream is not None and tap[0] < stream[0] < ext_proc[0]):
        yield Problem("http_filters", f"{STREAM_TAP_FILTER} must come after {STREAM_BYTES_FILTER} and before "
                      f"{EXT_PROC} (on the way out it reads what ext_proc passed, before {STREAM_BYTES_FILTER} "
                      "edits it and removes the x-lime-observe mark): without it, a stream extproc hands off is "
                      "never read, and the reaper settles it at no charge (extproc/stream_modes.py).")
    else:
        yield from _stream_tap(filter_path(STREAM_TAP_FILTER), tap[1])


def _stream_tap(where: str, config: Any) -> Iterator[Problem]:
    """The observing tap: ext_proc in observability mode behind a matcher on extproc's mark."""
    extension = getattr(config, "extension_config", None)
    inner: Any = extension.typed_config.unpack() if extension is not None and extension.typed_config else None
    if type(inner).__name__ != "ExternalProcessor" or config.xds_matcher is None:
        yield Problem(where, "must be an ExtensionWithMatcher around an ExternalProcessor, skipped unless the "
                      "response carries x-lime-observe: 1 (see envoy/envoy.yaml): otherwise it reads every answer.")
        return
    mode = inner.processing_mode
    if not inner.observability_mode or mode is None or mode.response_body_mode.name != "STREAMED":
        yield Problem(where, "observability_mode: true with response_body_mode: STREAMED is required: the tap reads "
                      "each chunk without the chunk waiting for extproc.")
    forwarded = set(inner.metadata_options.forwarding_namespaces.untyped) if inner.metadata_options and \
        inner.metadata_options.forwarding_namespaces else set()
    if not {AUTHZ_NAMESPACE, EXTPROC_NAMESPACE} <= forwarded:
        yield Problem(where, f"metadata_options.forwarding_namespaces.untyped must hold {AUTHZ_NAMESPACE} and "
                      f"{EXTPROC_NAMESPACE}: the tap settles from authz's grant and extproc's word.")
    timeout = inner.deferred_close_timeout
    if timeout is None or timeout < _MIN_DEFERRED_CLOSE:
        yield Problem(where, f"deferred_close_timeout must be at least {_MIN_DEFERRED_CLOSE.total_seconds():g} s "
                      "(Envoy's default is 5 s): Envoy closes the tap's stream that long after the request, and "
                      "a backlog in extproc would lose the end of a stream, its usage with it.")
