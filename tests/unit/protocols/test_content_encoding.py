"""Decoding compressed answers chunk by chunk: any split gives the original bytes, a corrupt body or a bomb
raises the module's own error, and what Lime does not decode is said so (no decoder)."""

from __future__ import annotations

import gzip
import itertools
import zlib
from collections.abc import Callable

import brotli
import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from lime.protocols import content_encoding
from lime.protocols.content_encoding import DecodeError, decoder_for, is_identity

PACK: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,
    "br": brotli.compress,
    "zstd": lambda data: zstandard.ZstdCompressor().compress(data),
}


def decode_in_pieces(encoding: str, packed: bytes, cuts: list[int]) -> bytes:
    decoder = decoder_for(encoding)
    assert decoder is not None
    edges = sorted({0, len(packed), *(c % (len(packed) + 1) for c in cuts)})
    return b"".join(decoder.decode(packed[a:b]) for a, b in itertools.pairwise(edges)) + decoder.flush()


@given(data=st.binary(max_size=5000), encoding=st.sampled_from(sorted(PACK)),
       cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=8))
def test_any_split_decodes_to_the_original(data: bytes, encoding: str, cuts: list[int]) -> None:
    assert decode_in_pieces(encoding, PACK[encoding](data), cuts) == data


@pytest.mark.parametrize("encoding", ["compress", "gzip, br", "identity, gzip", "exi", "pack200-gzip"])
def test_what_lime_does_not_decode_has_no_decoder(encoding: str) -> None:
    assert decoder_for(encoding) is None


@pytest.mark.parametrize(("value", "identity"), [("", True), ("identity", True), (" Identity ", True),
                                                 ("gzip", False), ("GZIP", False)])
def test_identity(value: str, identity: bool) -> None:
    assert is_identity(value) is identity
    assert (decoder_for(value) is not None) is (not identity)


@pytest.mark.parametrize("encoding", sorted(PACK))
def test_a_corrupt_body_raises_the_modules_own_error(encoding: str) -> None:
    packed = bytearray(PACK[encoding](b"hello world " * 200))
    packed[2:] = bytes(byte ^ 0x5A for byte in packed[2:])  # past gzip's magic: the rest is noise
    decoder = decoder_for(encoding)
    assert decoder is not None
    with pytest.raises(DecodeError):
        decoder.decode(bytes(packed))
        decoder.flush()


@pytest.mark.parametrize("encoding", sorted(PACK))
def test_a_decompression_bomb_is_refused(encoding: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(content_encoding, "MAX_DECODED_BYTES", 10_000)
    decoder = decoder_for(encoding)
    assert decoder is not None
    with pytest.raises(DecodeError):
        decoder.decode(PACK[encoding](b"\0" * 50_000))
        decoder.flush()
