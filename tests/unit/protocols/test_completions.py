"""Legacy ``POST /v1/completions``: how many answers a body asks for, what a cut-off answer's text is, and the
tap over its stream (usage read, and hidden from a client that did not ask for it, wherever the bytes split)."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lime.devstack.mock_upstream.completion_bodies import text_completion, text_completion_events
from lime.devstack.mock_upstream.reply import plan_reply
from lime.protocols.answer_text import completions_texts
from lime.protocols.endpoints import match_endpoint
from lime.protocols.errors import BadRequest
from lime.protocols.input_estimate import estimate_input
from lime.protocols.prompt_count import completions_answers
from lime.protocols.response_tap import ResponseTap
from lime.protocols.usage import Usage

SSE = "text/event-stream; charset=utf-8"


@pytest.mark.parametrize(("body", "answers"), [
    ({"prompt": "def f():"}, 1),
    ({"prompt": [1, 2, 3]}, 1),                      # token ids: one prompt
    ({"prompt": ["a", "b", "c"]}, 3),                # one answer per prompt
    ({"prompt": [[1, 2], [3]], "n": 2}, 4),          # per prompt, n each
    ({"prompt": "x", "n": 2, "best_of": 5}, 5),      # best_of are all generated and billed
    ({"prompt": []}, 1),                             # the upstream's to refuse
    ({}, 1),
])
def test_every_generated_answer_is_counted(body: dict[str, Any], answers: int) -> None:
    assert completions_answers(body) == answers


@pytest.mark.parametrize("body", [{"n": 0}, {"best_of": "3"}, {"n": True}, {"best_of": -1}])
def test_a_bad_count_is_refused(body: dict[str, Any]) -> None:
    with pytest.raises(BadRequest):
        completions_answers({"prompt": "x", **body})


@given(prompts=st.lists(st.text(min_size=1), min_size=1, max_size=8), n=st.integers(1, 5),
       best_of=st.none() | st.integers(1, 5))
def test_the_count_never_falls_below_what_the_api_returns(prompts: list[str], n: int, best_of: int | None) -> None:
    body: dict[str, Any] = {"prompt": prompts, "n": n, **({"best_of": best_of} if best_of else {})}
    assert completions_answers(body) >= len(prompts) * n


def test_token_id_prompts_count_one_token_each_and_suffix_counts_as_text() -> None:
    assert estimate_input({"prompt": list(range(500))}).tokens >= 500
    with_suffix = estimate_input({"prompt": "def f(", "suffix": "    return x\n" * 50}).tokens
    assert with_suffix > estimate_input({"prompt": "def f("}).tokens + 100


def test_the_path_is_its_own_endpoint() -> None:
    assert match_endpoint("POST", "/v1/completions").name == "completions"


def test_texts_are_each_choices_text() -> None:
    assert completions_texts({"choices": [{"text": "a", "index": 0}, {"text": "b", "index": 1}]}) == ["a", "b"]
    assert completions_texts({"choices": "odd"}) == []
    assert completions_texts({"choices": [{"text": None}]}) == []


def _events(include_usage: bool) -> bytes:
    reply = plan_reply({"model": "gpt-3.5-turbo-instruct", "prompt": "Say this is a test"}, chunks=5,
                       limit_fields=("max_tokens",), response_id="cmpl-1", created=1)
    return b"".join(text_completion_events(reply, 2, include_usage=include_usage))


@given(cuts=st.lists(st.integers(0, len(_events(True))), max_size=6))
def test_a_stream_the_client_did_not_ask_usage_of_looks_like_one_without_it(cuts: list[int]) -> None:
    raw = _events(True)
    bounds = [0, *sorted(cuts), len(raw)]
    tap = ResponseTap("completions", "public", hide_usage_chunk=True)
    tap.start(200, SSE)
    out = b"".join(tap.feed(raw[a:b]) for a, b in itertools.pairwise(bounds)) + tap.finish()
    assert tap.complete and tap.usage == Usage(input_tokens=5, output_tokens=10)
    chunks = [json.loads(line[6:]) for line in out.split(b"\n\n") if line.startswith(b"data: {")]
    assert all(chunk["choices"] for chunk in chunks) and all("usage" not in chunk for chunk in chunks)
    assert out.replace(b'"public"', b'"gpt-3.5-turbo-instruct"') == _events(False)


def test_a_whole_answer_reports_chats_usage() -> None:
    reply = plan_reply({"model": "m", "prompt": "abcd" * 4}, chunks=3, limit_fields=("max_tokens",),
                       response_id="cmpl-1", created=1)
    body = json.dumps(text_completion(reply, 1)).encode()
    tap = ResponseTap("completions", "m")
    tap.start(200, "application/json")
    assert tap.feed(body) + tap.finish() == body
    assert tap.complete and tap.usage == Usage(input_tokens=4, output_tokens=3)
