"""Compressing an answer as an upstream that ignores ``accept-encoding: identity`` does (x-mock-content-encoding).

A stream is compressed as one body and flushed after every event, so each event can be decoded as it arrives,
as a compressing proxy in front of a provider sends it. ``compress`` names a coding nobody decodes: the bytes go
as they are, under that name.
"""

from __future__ import annotations

import zlib

import brotli
import zstandard

__all__ = ["Packer"]


class Packer:
    def __init__(self, encoding: str | None) -> None:
        self.headers = {"Content-Encoding": encoding} if encoding else {}
        self._encoding = encoding
        self._zlib = (zlib.compressobj(wbits=16 + zlib.MAX_WBITS) if encoding == "gzip"
                      else zlib.compressobj() if encoding == "deflate" else None)
        self._brotli = brotli.Compressor() if encoding == "br" else None
        self._zstd = zstandard.ZstdCompressor().compressobj() if encoding == "zstd" else None

    def pack(self, data: bytes) -> bytes:
        """``data`` compressed and flushed: everything so far can be decoded from what was sent."""
        if self._zlib is not None:
            return self._zlib.compress(data) + self._zlib.flush(zlib.Z_SYNC_FLUSH)
        if self._brotli is not None:
            return bytes(self._brotli.process(data)) + bytes(self._brotli.flush())
        if self._zstd is not None:
            return self._zstd.compress(data) + self._zstd.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
        return data

    def end(self) -> bytes:
        if self._zlib is not None:
            return self._zlib.flush()
        if self._brotli is not None:
            return bytes(self._brotli.finish())
        if self._zstd is not None:
            return self._zstd.flush()
        return b""
