"""Which streamed answers Envoy edits on the way out while extproc only reads them. Pure.

The byte work of a stream is static once extproc has seen its headers: the public model id instead of the one the
upstream reports, and (for a chat stream Lime asked for usage the client did not) its usage chunk taken out again.
Envoy's ``lime.stream_bytes`` Lua filter (envoy/envoy.yaml) does it from the word extproc writes into ``lime.extproc``
with its reply to the response headers, so extproc's reply to each chunk carries no body and the chunk goes on as
soon as Envoy has it back. Answers extproc must still rewrite keep the intercepting path: an upstream error (Lime's
body replaces it, extproc/error_answers.py), a compressed stream (extproc decodes it), anything not SSE (a JSON body
is rewritten whole).
"""

from __future__ import annotations

import json

from lime.protocols.response_tap import Framing, ResponseTap

__all__ = ["envoy_edits_stream", "stream_edit_metadata"]


def envoy_edits_stream(tap: ResponseTap) -> bool:
    """A successful SSE answer that comes as the upstream wrote it (no content-encoding to decode)."""
    return tap.framing is Framing.SSE and not tap.decodes and 200 <= tap.status < 300


def stream_edit_metadata(public_model: str, hide_usage_chunk: bool) -> dict[str, str]:
    """The word to ``lime.stream_bytes``: the public id as JSON writes it (what replaces the upstream's, quotes
    included, as the tap wrote it), and whether the usage chunk is hidden."""
    metadata = {"stream_model": json.dumps(public_model)}
    if hide_usage_chunk:
        metadata["hide_usage"] = "1"
    return metadata
