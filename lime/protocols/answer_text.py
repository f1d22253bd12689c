"""The text an answer carries, per answer format: what Lime counts when an answer ends without the upstream's usage.

Each reader takes one parsed stream event, or a whole JSON answer, and returns its pieces of text in order; it
never raises, whatever shape an upstream sends (:mod:`lime.protocols.output_count` does the counting). An
endpoint names its reader in its spec (:mod:`lime.protocols.endpoints`); an endpoint without text output
(embeddings) names none.
"""

from __future__ import annotations

from typing import Any

__all__ = ["chat_texts", "completions_texts", "messages_texts", "responses_texts"]


def _items(value: Any) -> list[dict[str, Any]]:
    """The objects of a JSON list; anything else (an upstream's odd answer) has none."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _strings(source: Any, keys: tuple[str, ...]) -> list[str]:
    return [source[k] for k in keys if isinstance(source.get(k), str)] if isinstance(source, dict) else []


def chat_texts(event: dict[str, Any]) -> list[str]:
    """Chat Completions: content, reasoning, refusals and tool arguments of each choice."""
    texts: list[str] = []
    for choice in _items(event.get("choices")):
        delta = choice.get("delta")
        texts += _strings(delta, ("content", "reasoning_content", "refusal"))
        for call in _items(delta.get("tool_calls") if isinstance(delta, dict) else None):
            texts += _strings(call.get("function"), ("arguments",))
        texts += _strings(choice.get("message"), ("content",))  # a whole JSON answer
    return texts


def completions_texts(event: dict[str, Any]) -> list[str]:
    """Legacy Completions: each choice's ``text``, in a stream's chunks and in a whole answer alike."""
    texts: list[str] = []
    for choice in _items(event.get("choices")):
        texts += _strings(choice, ("text",))
    return texts


def responses_texts(event: dict[str, Any]) -> list[str]:
    """Responses: every ``*.delta`` event's delta (text, arguments, reasoning), or a whole answer's output text."""
    texts: list[str] = []
    kind = event.get("type")
    if isinstance(kind, str) and kind.endswith(".delta"):
        texts += _strings(event, ("delta",))
    if event.get("object") == "response":  # a whole JSON answer
        for item in _items(event.get("output")):
            for part in _items(item.get("content")):
                texts += _strings(part, ("text",))
    return texts


def messages_texts(event: dict[str, Any]) -> list[str]:
    """Anthropic Messages: text, tool input JSON and thinking deltas (not signatures), or a whole answer's text."""
    texts: list[str] = []
    if event.get("type") == "content_block_delta":
        texts += _strings(event.get("delta"), ("text", "partial_json", "thinking"))
    elif event.get("type") == "message":  # a whole JSON answer
        for block in _items(event.get("content")):
            texts += _strings(block, ("text",))
    return texts
