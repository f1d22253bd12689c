"""What the mock says and how many tokens it charges for it, independent of any provider's wire format.

Everything here is deterministic given the request, except the ids, so tests can predict usage exactly:
input tokens are ``ceil(characters of prompt text / 4)`` (at least 1), output tokens are the number of
text pieces, and each piece is one word of a fixed sentence.
"""

from __future__ import annotations

import math
import secrets
import string
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Reply",
    "count_input_tokens",
    "new_id",
    "plan_reply",
    "reply_pieces",
]

_WORDS = ("Hello", "from", "the", "mock", "upstream.")
# The request fields that carry prompt text across the APIs; tools and settings are not counted.
_PROMPT_FIELDS = ("messages", "input", "system", "instructions", "prompt", "suffix")
# Below a prompt field, only strings under these keys are text; "role", "type", ids and the like are not.
_TEXT_KEYS = frozenset({"content", "text", "input", "system", "instructions", "output", "arguments"})
_ID_ALPHABET = string.ascii_letters + string.digits
# Random bytes mapped onto the alphabet in one C call: ``secrets.choice`` per character made id generation a fifth
# of the mock's CPU under load (bench/, docs/performance.md). The slight bias of ``byte % 62`` is harmless in a mock.
_ID_TABLE = bytes(ord(_ID_ALPHABET[i % len(_ID_ALPHABET)]) for i in range(256))


@dataclass(frozen=True)
class Reply:
    """One planned answer: the model to echo, the pieces to send and the tokens to report."""

    model: str
    pieces: tuple[str, ...]
    input_tokens: int
    #: True when the request's token limit cut the reply short (``finish_reason: "length"`` and kin).
    truncated: bool
    response_id: str
    created: int
    #: The Responses API's output item id (``msg_…``); unused by the other APIs.
    item_id: str = ""
    #: Of ``input_tokens``, how many were read from the prompt cache.
    cached_tokens: int = 0

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def output_tokens(self) -> int:
        return len(self.pieces)


def reply_pieces(count: int) -> tuple[str, ...]:
    """``count`` pieces cycling through "Hello from the mock upstream." with the spaces real tokens carry."""
    return tuple(_WORDS[i % len(_WORDS)] if i == 0 else " " + _WORDS[i % len(_WORDS)] for i in range(max(count, 0)))


def _prompt_parts(value: Any, key: str | None) -> Iterator[str | int]:
    if isinstance(value, str):
        if key is None or key in _TEXT_KEYS:
            yield value
    elif isinstance(value, bool):
        return
    elif isinstance(value, int):
        # Embeddings accept pre-tokenised input: each integer is one token.
        if key is None or key in _TEXT_KEYS:
            yield value
    elif isinstance(value, Mapping):
        for child_key, child in value.items():
            yield from _prompt_parts(child, str(child_key))
    elif isinstance(value, Sequence):
        for item in value:
            yield from _prompt_parts(item, key)


def count_input_tokens(body: Mapping[str, Any]) -> int:
    """Prompt tokens for a request body of any of the four APIs: about four characters a token, at least 1."""
    characters = 0
    token_ids = 0
    for field in _PROMPT_FIELDS:
        for part in _prompt_parts(body.get(field), None):
            if isinstance(part, str):
                characters += len(part)
            else:
                token_ids += 1
    return max(1, math.ceil(characters / 4) + token_ids)


def _token_limit(body: Mapping[str, Any], limit_fields: Sequence[str]) -> int | None:
    for field in limit_fields:
        value = body.get(field)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None


def plan_reply(
    body: Mapping[str, Any],
    *,
    chunks: int,
    limit_fields: Sequence[str],
    response_id: str,
    created: int,
    item_id: str = "",
    cached_tokens: int = 0,
) -> Reply:
    """Plan the answer to ``body``: ``chunks`` pieces, cut to the request's token limit as a real model would.

    ``limit_fields`` names the request's max-tokens fields in order of preference, since each API spells it
    differently (``max_completion_tokens``/``max_tokens``, ``max_output_tokens``, ``max_tokens``).
    """
    limit = _token_limit(body, limit_fields)
    count = max(chunks, 0)
    truncated = limit is not None and limit < count
    if limit is not None:
        count = min(count, limit)
    return Reply(
        model=str(body.get("model", "")),
        pieces=reply_pieces(count),
        input_tokens=(input_tokens := count_input_tokens(body)),
        truncated=truncated,
        response_id=response_id,
        created=created,
        item_id=item_id,
        cached_tokens=min(max(cached_tokens, 0), input_tokens),
    )


def new_id(prefix: str, length: int = 24) -> str:
    """A fresh provider-style id such as ``chatcmpl-…``, ``resp_…`` or ``msg_…``."""
    return prefix + secrets.token_bytes(length).translate(_ID_TABLE).decode("ascii")
