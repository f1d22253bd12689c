"""Lime's own count of the output tokens in what a client received, kept in memory bounded by the answer's text.

The rule (README "Billing"): output tokens = the larger of the text events received (OpenAI streams about one
token per event) and the tokenizer's count of their text (:mod:`lime.protocols.token_count`). A whole JSON answer is one
item, counted the same way.

Counting is needed only when an answer ends without the upstream's final usage (cut off, or an upstream that
never reports it), which is rare; so the tap does not parse each event on the way (a JSON parse per event on the
hot path), it hands the raw event data to :class:`OutputCount`, which holds it. Raw data is ~0.2 KiB per streamed
chat token, far more than the text it carries, so when the held data would pass :data:`FOLD_BUDGET` it is
*folded*: parsed once, reduced to its text and its count of text events, and dropped. Only long answers fold, and
each fold parses what was held since the last one, so the cost is spread thin. Folding does not change the
number: the texts are joined in the order they came and the counts of text events add up, so
:meth:`OutputCount.tokens` equals :func:`count_output` over every item, folded or not.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from lime.protocols.endpoints import endpoint_named
from lime.protocols.token_count import count_tokens

__all__ = ["FOLD_BUDGET", "OutputCount", "count_output", "texts_of"]

#: Raw bytes held before a fold: about 300 chat chunks, so a stream whose usage arrives (the common case) is
#: rarely folded, and one that is costs one parse per event, once, in batches.
FOLD_BUDGET = 64 * 1024


def texts_of(endpoint: str, event: dict[str, Any]) -> list[str]:
    """The text an event (or a whole JSON answer) of ``endpoint`` carries, whatever its shape; never raises."""
    texts = _texts_reader(endpoint)
    return texts(event) if texts is not None else []


def _texts_reader(endpoint: str) -> Callable[[dict[str, Any]], list[str]] | None:
    spec = endpoint_named(endpoint)
    return spec.texts if spec is not None else None


@dataclass
class OutputCount:
    """The data of every event (or the one JSON body) a client received, for one answer, as it comes."""

    endpoint: str
    budget: int = FOLD_BUDGET
    #: Folded so far: the items that carried text, and their text, one string per fold, in order.
    text_events: int = 0
    texts: list[str] = field(default_factory=list)
    #: Not folded yet: raw items as received, and their total size.
    held: list[bytes] = field(default_factory=list)
    held_bytes: int = 0

    def add(self, data: bytes) -> None:
        """One item the client received. On the hot path: no parse unless the held data would pass the budget."""
        size = len(data)
        if self.held_bytes + size > self.budget:
            # Fold what came before, not this item: a whole JSON body (one item) is then never parsed here,
            # only at the end if counting is needed at all, as before; and what is held stays within
            # max(budget, one item).
            self.fold()
        self.held.append(data)
        self.held_bytes += size

    def fold(self) -> None:
        """Reduce the held items to their text and count of text events; drop them."""
        held, self.held, self.held_bytes = self.held, [], 0
        text_events, text = _read(self.endpoint, held)
        self.text_events += text_events
        if text:
            # One string per fold, not one per piece: a str object costs ~50 bytes besides its text.
            self.texts.append(text)

    def tokens(self) -> int:
        """Lime's count of the output tokens in every item added. Reads what is still held without folding it:
        settlement stays a pure function of the tap."""
        text_events, text = _read(self.endpoint, self.held)
        return max(self.text_events + text_events, count_tokens("".join([*self.texts, text])))


def _read(endpoint: str, items: list[bytes]) -> tuple[int, str]:
    """The items that carry text, and all their text in order."""
    texts_in = _texts_reader(endpoint)
    if texts_in is None:
        return 0, ""  # embeddings: no text to count, so no parse of a body that may be megabytes of floats
    text_events = 0
    pieces: list[str] = []
    for data in items:
        try:
            event = json.loads(data)
        except (ValueError, RecursionError):
            continue
        if not isinstance(event, dict):
            continue
        found = [text for text in texts_in(event) if text]
        if found:
            text_events += 1
            pieces += found
    return text_events, "".join(pieces)


def count_output(endpoint: str, delivered: Iterable[bytes]) -> int:
    """Lime's own count of the output tokens in the events a client received."""
    count = OutputCount(endpoint)
    for data in delivered:
        count.add(data)
    return count.tokens()
