"""Which streamed answers Envoy edits on the way out while extproc only reads them. Pure.

The byte work of a stream is static once extproc has seen its headers: the public model id instead of the one the
upstream reports, and (for a chat stream Lime asked for usage the client did not) its usage chunk taken out again.
Envoy's ``lime.stream_bytes`` Lua filter (envoy/envoy.yaml) does it from the word extproc writes into ``lime.extproc``
with its reply to the response headers. Answers extproc must still rewrite keep the intercepting path: an upstream
error (Lime's body replaces it, extproc/error_answers.py), a compressed stream (extproc decodes it), anything not SSE
(a JSON body is rewritten whole).

Such a stream is then *handed off*: extproc's own ext_proc stops at the response headers, and Envoy's
``lime.stream_tap`` (ext_proc in observability mode) sends extproc a copy of each chunk without waiting for a reply,
on a second gRPC stream that settles the request at its end. Not a Responses stream: its stored-response record must
be written before the answer's last bytes go on (a client that continues at once finds it), which only the
intercepting path can hold back; its chunks are acknowledged unchanged instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from lime.money.grant import Grant
from lime.protocols.endpoints import endpoint_named
from lime.protocols.response_tap import Framing, ResponseTap

__all__ = [
    "ObservedAnswer",
    "envoy_edits_stream",
    "handoff_metadata",
    "hands_off",
    "observed_answer",
    "stream_edit_metadata",
]


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


def hands_off(grant: Grant, tap: ResponseTap) -> bool:
    """The observing tap reads this stream from its response headers on (see above)."""
    spec = endpoint_named(grant.endpoint)
    return envoy_edits_stream(tap) and spec is not None and not spec.records_answers


@dataclass(frozen=True)
class ObservedAnswer:
    """What the observing tap needs of the headers it never sees, from extproc's word at them."""

    status: int
    hide_usage_chunk: bool
    #: The candidate that answered (x-lime-upstream), if it named itself.
    served_by: str | None


def handoff_metadata(public_model: str, hide_usage_chunk: bool, status: int, served_by: str | None) -> dict[str, str]:
    """The word for ``lime.stream_bytes`` and, forwarded on each chunk, for the observing tap."""
    word = {**stream_edit_metadata(public_model, hide_usage_chunk), "status": str(status)}
    if served_by:
        word["served_by"] = served_by
    return word


def observed_answer(word: dict[str, str]) -> ObservedAnswer | None:
    """The answer a handed-off stream carries, or ``None`` when extproc's word is not there (a misconfigured Envoy)."""
    try:
        status = int(word["status"])
    except (KeyError, ValueError):
        return None
    return ObservedAnswer(status, word.get("hide_usage") == "1", word.get("served_by"))
