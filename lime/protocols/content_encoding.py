"""Decoding a compressed answer, chunk by chunk, so the tap can read it. Sans-IO: bytes in, bytes out.

extproc asks every upstream for ``accept-encoding: identity``; some ignore it (a relay behind a CDN, a proxy that
compresses what it forwards). An answer the tap cannot read would be billed by the fallback rule only, so the
encodings upstreams use are decoded here: ``gzip``, ``deflate``, ``br`` and ``zstd``. The client then gets the
decoded bytes and no ``content-encoding`` (extproc removes it), which every HTTP client reads.

Anything else (``compress``, a list of several codings) returns no decoder: the answer passes through as it came
and settles by the rule for unreadable answers (docs/billing.md).
"""

from __future__ import annotations

import zlib
from typing import Protocol

import brotli
import zstandard

__all__ = ["MAX_DECODED_BYTES", "DecodeError", "Decoder", "decoder_for", "is_identity"]

#: A decoded answer larger than this is refused (a decompression bomb): the tap stops reading it.
MAX_DECODED_BYTES = 256 * 1024 * 1024


class DecodeError(Exception):
    """The body is not what its ``content-encoding`` says, or decodes to more than :data:`MAX_DECODED_BYTES`."""


class Decoder(Protocol):
    def decode(self, chunk: bytes) -> bytes: ...
    def flush(self) -> bytes: ...


class _Counted:
    def __init__(self) -> None:
        self._size = 0

    def _checked(self, out: bytes) -> bytes:
        self._size += len(out)
        if self._size > MAX_DECODED_BYTES:
            raise DecodeError(f"the decoded answer passed {MAX_DECODED_BYTES} bytes")
        return out


class _Zlib(_Counted):
    def __init__(self, raw_deflate_allowed: bool) -> None:
        super().__init__()
        # 32 + MAX_WBITS: a gzip or a zlib header, detected. `deflate` is zlib-wrapped by the RFC, but some servers
        # send raw deflate: that is seen on the first byte, which for zlib always has compression method 8.
        self._raw_allowed = raw_deflate_allowed
        self._object: zlib._Decompress | None = None

    def decode(self, chunk: bytes) -> bytes:
        if self._object is None:
            if not chunk:
                return b""
            raw = self._raw_allowed and chunk[0] & 0x0F != 8
            self._object = zlib.decompressobj(-zlib.MAX_WBITS if raw else 32 + zlib.MAX_WBITS)
        try:
            return self._checked(self._object.decompress(chunk))
        except zlib.error as exc:
            raise DecodeError(str(exc)) from None

    def flush(self) -> bytes:
        if self._object is None:
            return b""
        try:
            return self._checked(self._object.flush())
        except zlib.error as exc:
            raise DecodeError(str(exc)) from None


class _Brotli(_Counted):
    def __init__(self) -> None:
        super().__init__()
        self._object = brotli.Decompressor()

    def decode(self, chunk: bytes) -> bytes:
        try:
            return self._checked(self._object.process(chunk))
        except brotli.error as exc:
            raise DecodeError(str(exc)) from None

    def flush(self) -> bytes:
        return b""


class _Zstd(_Counted):
    def __init__(self) -> None:
        super().__init__()
        self._object = zstandard.ZstdDecompressor().decompressobj()

    def decode(self, chunk: bytes) -> bytes:
        try:
            return self._checked(self._object.decompress(chunk))
        except zstandard.ZstdError as exc:
            raise DecodeError(str(exc)) from None

    def flush(self) -> bytes:
        return b""


def decoder_for(content_encoding: str) -> Decoder | None:
    """A fresh decoder for one answer's ``content-encoding``; ``None`` for one Lime does not decode. An empty or
    ``identity`` encoding needs none: callers check :func:`is_identity` first."""
    coding = content_encoding.strip().lower()
    if coding in ("gzip", "x-gzip"):
        return _Zlib(raw_deflate_allowed=False)
    if coding == "deflate":
        return _Zlib(raw_deflate_allowed=True)
    if coding == "br":
        return _Brotli()
    if coding == "zstd":
        return _Zstd()
    return None


def is_identity(content_encoding: str) -> bool:
    return content_encoding.strip().lower() in ("", "identity")
