"""Which answers extproc reads whole, in one message, instead of chunk by chunk. Pure.

A whole answer costs one ext_proc message on the response side instead of two or more (its headers, then each
chunk): ext_proc skips its headers and buffers its body (``mode_override`` in the reply to the request headers), and
the header edit extproc decides at the body goes out through Envoy's ``lime.answer_headers`` filter
(envoy/envoy.yaml), which holds the headers until then. A streamed answer must not wait for its end, and an
embeddings answer grows with its input (thousands of vectors can pass Envoy's 32 MiB buffer), so both stay
STREAMED.
"""

from __future__ import annotations

from lime.money.grant import Grant
from lime.protocols.endpoints import ModelKind, endpoint_named

__all__ = ["reads_whole_answer"]


def reads_whole_answer(grant: Grant) -> bool:
    spec = endpoint_named(grant.endpoint)
    return not grant.stream and spec is not None and spec.kind is ModelKind.CHAT and spec.has_body
