"""How many answers a legacy Completions request asks the upstream for: each prompt of a list is answered
``best_of`` times (``n`` of them returned), and every one generated is billed, so every one is reserved for.

OpenAI's reference (https://platform.openai.com/docs/api-reference/completions/create): ``prompt`` is "a string,
array of strings, array of tokens, or array of token arrays"; ``best_of`` "generates best_of completions
server-side and returns the best one ... results cannot be streamed ... best_of must be greater than n".
"""

from __future__ import annotations

from typing import Any

from lime.protocols.errors import BadRequest

__all__ = ["completions_answers"]


def completions_answers(body: dict[str, Any]) -> int:
    """The answers generated for ``body``: prompts times the larger of ``n`` and ``best_of``."""
    per_prompt = max(_positive(body, "n"), _positive(body, "best_of"))
    return _prompts(body.get("prompt")) * per_prompt


def _positive(body: dict[str, Any], name: str) -> int:
    value = body.get(name)
    if value is None:
        return 1
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadRequest(f"`{name}` must be a positive integer.", param=name, code="invalid_type")
    return value


def _prompts(prompt: Any) -> int:
    # A list of token ids is one prompt; a list of strings or of token lists is one prompt each. Anything else
    # (a missing prompt, an empty list) is the upstream's to refuse, and reserved as one.
    if isinstance(prompt, list) and prompt and not isinstance(prompt[0], int):
        return len(prompt)
    return 1
