"""The mock's turn comes from the conversation alone: a tool call when the user asks for an offered tool, the
final answer once the conversation ends with that tool's result, whatever was played before."""

from __future__ import annotations

from typing import Any

from lime.devstack.mock_upstream.turns import RESULT_PREFIX, plan_turn

ASK = 'Read it. <mock-tool-call name="Read">{"file_path": "/tmp/n"}</mock-tool-call>'
TOOLS: Any = [{"name": "Read", "input_schema": {}}]


def test_an_offered_tool_asked_for_is_called() -> None:
    turn = plan_turn(True, {"tools": TOOLS, "messages": [{"role": "user", "content": ASK}]})
    assert turn.tool_call == ("Read", {"file_path": "/tmp/n"})


def test_a_tool_not_offered_or_input_not_an_object_is_plain_text() -> None:
    assert plan_turn(True, {"messages": [{"role": "user", "content": ASK}]}).tool_call is None
    broken = ASK.replace('{"file_path": "/tmp/n"}', "[1]")
    assert plan_turn(True, {"tools": TOOLS, "messages": [{"role": "user", "content": broken}]}).tool_call is None


def test_a_conversation_ending_with_a_result_gets_the_final_answer_quoting_it() -> None:
    messages: Any = [{"role": "user", "content": ASK},
                     {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "Read", "input": {}}]},
                     {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t",
                                                   "content": [{"type": "text", "text": "note-1"}]}]}]
    assert plan_turn(True, {"tools": TOOLS, "messages": messages}).text == RESULT_PREFIX + "note-1"
    responses: Any = [{"role": "user", "content": [{"type": "input_text", "text": ASK}]},
                      {"type": "function_call", "call_id": "c", "name": "Read", "arguments": "{}"},
                      {"type": "function_call_output", "call_id": "c", "output": "note-2"}]
    assert plan_turn(False, {"input": responses}).text == RESULT_PREFIX + "note-2"


def test_thinking_and_reasoning_are_shown_only_when_asked_for() -> None:
    assert plan_turn(True, {"thinking": {"type": "enabled", "budget_tokens": 1024}}).thinking
    assert not plan_turn(True, {"thinking": {"type": "adaptive"}}).thinking
    assert plan_turn(False, {"include": ["reasoning.encrypted_content"]}).reasoning
    assert not plan_turn(False, {}).reasoning
