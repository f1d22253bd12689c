"""What kind of turn the mock plays, read from the conversation alone (never from state kept between requests),
so a test of a coding agent can run in any order: a tool call the prompt asks for, the final answer after the
tool's result came back, and the thinking or reasoning the request asked the model to show.

* **A tool call**: the latest user turn carries ``<mock-tool-call name="NAME">{JSON input}</mock-tool-call>`` and
  the request offers a tool of that name: the answer is that call (Anthropic ``tool_use``, Responses
  ``function_call``), with ``stop_reason: "tool_use"``.
* **After a tool's result**: the conversation ends with a tool result (``tool_result``, ``function_call_output``):
  the answer is text that quotes the start of that result (:data:`RESULT_PREFIX`), so a test can tell that the
  result went through.
* **Thinking** (Anthropic): ``thinking.type`` is ``"enabled"``: a ``thinking`` block with its ``signature``
  first; a prompt holding Anthropic's documented trigger string adds a ``redacted_thinking`` block.
* **Reasoning** (Responses): ``include`` holds ``"reasoning.encrypted_content"``: a ``reasoning`` item with
  ``encrypted_content`` first, as ``store: false`` clients (Codex CLI) ask for.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["PLAIN", "REDACTED_THINKING_TRIGGER", "RESULT_PREFIX", "Turn", "plan_turn", "signature_for"]

#: Anthropic's test string that makes a model answer with a ``redacted_thinking`` block ("Thinking redaction",
#: https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking#thinking-redaction).
REDACTED_THINKING_TRIGGER = "ANTHROPIC_MAGIC_STRING_TRIGGER_REDACTED_THINKING_"
RESULT_PREFIX = "The tool answered: "
_TOOL_CALL = re.compile(r'<mock-tool-call name="([^"]+)">(.*?)</mock-tool-call>', re.DOTALL)
_QUOTED_CHARS = 200


@dataclass(frozen=True)
class Turn:
    #: A tool to call and its input, instead of text.
    tool_call: tuple[str, dict[str, Any]] | None = None
    #: Text to answer instead of the usual sentence (after a tool's result).
    text: str | None = None
    thinking: bool = False
    redacted_thinking: bool = False
    reasoning: bool = False


#: The usual answer: text, nothing shown of the thinking.
PLAIN = Turn()


def plan_turn(anthropic: bool, body: Mapping[str, Any]) -> Turn:
    """The turn to play for a Messages (``anthropic``) or Responses request body."""
    turns = body.get("messages") if anthropic else body.get("input")
    turns = turns if isinstance(turns, list) else []
    last_user = _last_user_text(turns, anthropic)
    thinking = body.get("thinking")
    include = body.get("include")
    common: dict[str, Any] = {
        "thinking": anthropic and isinstance(thinking, Mapping) and thinking.get("type") == "enabled",
        "redacted_thinking": anthropic and REDACTED_THINKING_TRIGGER in last_user,
        "reasoning": not anthropic and isinstance(include, list) and "reasoning.encrypted_content" in include,
    }
    result = _trailing_tool_result(turns, anthropic)
    if result is not None:
        return Turn(text=RESULT_PREFIX + result[:_QUOTED_CHARS], **common)
    asked = _TOOL_CALL.search(last_user)
    if asked is not None and asked.group(1) in _offered_tools(body):
        try:
            arguments = json.loads(asked.group(2))
        except ValueError:
            arguments = None
        if isinstance(arguments, dict):
            return Turn(tool_call=(asked.group(1), arguments), **common)
    return Turn(**common)


def signature_for(text: str) -> str:
    """An opaque, base64 signature as the API's look; deterministic, so a test can recompute it."""
    return base64.b64encode(b"\x12\x0c" + hashlib.sha256(text.encode()).digest() * 3).decode()


def _offered_tools(body: Mapping[str, Any]) -> set[str]:
    tools = body.get("tools")
    return {tool["name"] for tool in tools if isinstance(tool, dict) and isinstance(tool.get("name"), str)} \
        if isinstance(tools, list) else set()


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(_text_of(part) for part in content)
    if isinstance(content, dict):
        if isinstance(content.get("text"), str):
            return str(content["text"])
        return _text_of(content.get("content"))
    return ""


def _last_user_text(turns: list[Any], anthropic: bool) -> str:
    for turn in reversed(turns):
        if isinstance(turn, dict) and turn.get("role") == "user":
            content = turn.get("content")
            if anthropic and isinstance(content, list):
                # A tool result is the user's turn too, but not what the user typed.
                content = [part for part in content if not (isinstance(part, dict)
                                                            and part.get("type") == "tool_result")]
            return _text_of(content)
    return ""


def _trailing_tool_result(turns: list[Any], anthropic: bool) -> str | None:
    """The text of the tool result the conversation ends with, if it ends with one."""
    if not turns or not isinstance(turns[-1], dict):
        return None
    last = turns[-1]
    if anthropic:
        content = last.get("content")
        if last.get("role") != "user" or not isinstance(content, list):
            return None
        results = [part for part in content if isinstance(part, dict) and part.get("type") == "tool_result"]
        return "\n".join(_text_of(part.get("content")) for part in results) if results else None
    if last.get("type") == "function_call_output":
        output = last.get("output")
        return output if isinstance(output, str) else _text_of(output)
    return None
