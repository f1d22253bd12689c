"""What :mod:`lime.protocols.output_count` pins: folding what a client received to its text changes memory, not money.

* **the same number**: for any sequence of items (text-bearing or not, odd or not JSON, every endpoint) and any
  fold budget, down to 0 (a fold before every item), the folded count is exactly the unfolded one: same text
  events, same text in the same order, so the same tokenizer count (``reference_count``, the rule written out
  once more without folding);
* **through the tap**: every recorded stream and body, cut after every event and in the middle of each, settles
  to the same :class:`~lime.money.quota.UsageEvent` whether the tap folds after every event or never;
* **bounded**: over a 20,000-chunk chat stream the raw data held stays within the budget plus one event, and what
  is kept besides is the answer's text;
* **the hot path**: a short stream and a whole JSON body are held as they came, never parsed before the end.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from dataclasses import replace

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from lime.money.grant import Grant
from lime.money.price_sheet import GrantPrices, PriceSheet, Rates, encode_prices
from lime.money.quota import UsageEvent
from lime.money.settlement import settlement_for
from lime.protocols.output_count import FOLD_BUDGET, OutputCount, count_output, texts_of
from lime.protocols.response_tap import ResponseTap
from lime.protocols.token_count import count_tokens
from tests.unit.protocols.tap_cases import CASES, SSE, Case, case_ids, event_ends, tap_for

GRANT = Grant(request_id="req-1", tenant_id="tenant-1", key_id="key-1", endpoint="chat_completions",
              model="team-default", upstream="oai", upstream_model="gpt-4o", stream=True, reserved=123_456,
              reserved_tokens=5000, input_estimate=777, output_cap=4096,
              prices=encode_prices(GrantPrices(PriceSheet(Rates(3_000_000, 15_000_000, 1_500_000)))),
              started_at=1_700_000_000.5)


def reference_parts(endpoint: str, delivered: Iterable[bytes]) -> tuple[int, str]:
    """The rule over every item at once, as it was before folding: text events and all their text, in order."""
    text_events = 0
    texts: list[str] = []
    for data in delivered:
        try:
            event = json.loads(data)
        except (ValueError, RecursionError):
            continue
        if not isinstance(event, dict):
            continue
        pieces = [text for text in texts_of(endpoint, event) if text]
        if pieces:
            text_events += 1
            texts.extend(pieces)
    return text_events, "".join(texts)


def reference_count(endpoint: str, delivered: Iterable[bytes]) -> int:
    text_events, text = reference_parts(endpoint, delivered)
    return max(text_events, count_tokens(text))


def folded(endpoint: str, delivered: Iterable[bytes], budget: int) -> OutputCount:
    count = OutputCount(endpoint, budget=budget)
    for data in delivered:
        count.add(data)
    return count


# -- the same number, whatever the budget -----------------------------------------------------------------------

# Text with what a tokenizer merges across piece boundaries (spaces, letters, digits, punctuation) and beyond ASCII.
texts = st.text(st.sampled_from([*"ab 1.,\n\t", "é", "日", "本", "🙂", "\\", '"']), max_size=6)


def chat_items() -> st.SearchStrategy[bytes]:
    delta = st.fixed_dictionaries({}, optional={"content": texts | st.none(), "reasoning_content": texts,
                                                "refusal": texts | st.none(), "role": st.just("assistant")})
    call = st.builds(lambda a: {"index": 0, "function": {"arguments": a}}, texts)
    with_calls = st.builds(lambda d, calls: {**d, "tool_calls": calls}, delta, st.lists(call, max_size=2))
    chunk = st.builds(lambda deltas: {"object": "chat.completion.chunk",
                                      "choices": [{"index": i, "delta": d} for i, d in enumerate(deltas)]},
                      st.lists(delta | with_calls, max_size=2))
    usage = st.just({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 5}})
    body = st.builds(lambda t: {"object": "chat.completion", "choices": [{"message": {"content": t}}]}, texts)
    return (chunk | usage | body).map(lambda value: json.dumps(value).encode())


def responses_items() -> st.SearchStrategy[bytes]:
    kinds = st.sampled_from(["response.output_text.delta", "response.function_call_arguments.delta",
                             "response.reasoning_summary_text.delta", "response.output_text.done",
                             "response.created"])
    event = st.builds(lambda kind, t: {"type": kind, "delta": t, "text": t}, kinds, texts)
    body = st.builds(lambda ts: {"object": "response", "output": [{"content": [{"text": t} for t in ts]}]},
                     st.lists(texts, max_size=3))
    return (event | body).map(lambda value: json.dumps(value).encode())


def messages_items() -> st.SearchStrategy[bytes]:
    keys = st.sampled_from(["text", "partial_json", "thinking", "signature"])
    delta = st.builds(lambda key, t: {"type": "content_block_delta", "index": 0, "delta": {key: t}}, keys, texts)
    other = st.sampled_from([{"type": "ping"}, {"type": "message_start", "message": {"usage": {"input_tokens": 2}}},
                             {"type": "message_delta", "usage": {"output_tokens": 4}}, {"type": "message_stop"}])
    body = st.builds(lambda ts: {"type": "message", "content": [{"type": "text", "text": t} for t in ts]},
                     st.lists(texts, max_size=3))
    return (delta | other | body).map(lambda value: json.dumps(value).encode())


#: What is not an answer's JSON at all: chat's end, odd values, an event cut in half (flushed at EOF).
NOT_ANSWERS = st.sampled_from([b"[DONE]", b"not json", b"[1, 2]", b"null", b"{}", b'{"choices": "odd"}',
                               b'{"choices":[{"delta":{"content":"cut'])
ITEMS = {"chat_completions": chat_items(), "responses": responses_items(), "messages": messages_items()}


@st.composite
def answers(draw: st.DrawFn) -> tuple[str, list[bytes]]:
    endpoint = draw(st.sampled_from([*ITEMS, "embeddings"]))
    items = ITEMS.get(endpoint, chat_items())  # embeddings: text where none is counted
    return endpoint, draw(st.lists(items | NOT_ANSWERS, max_size=40))


@given(answer=answers(), budget=st.integers(0, 200) | st.sampled_from([400, 2_000, FOLD_BUDGET]))
@example(answer=("chat_completions", [json.dumps({"choices": [{"delta": {"content": t}}]}).encode()
                                      for t in ["Hel", "lo", " wor", "ld", "!"]]), budget=0)
@settings(max_examples=400)
def test_folding_at_any_budget_counts_exactly_what_counting_at_the_end_does(
        answer: tuple[str, list[bytes]], budget: int) -> None:
    endpoint, delivered = answer
    count = folded(endpoint, delivered, budget)
    expected = reference_count(endpoint, delivered)
    assert count.tokens() == count_output(endpoint, delivered) == expected
    count.fold()  # the rest too: what tokens() read of the held items without folding them, a fold keeps
    assert (count.held, count.held_bytes, count.tokens()) == ([], 0, expected)
    if endpoint != "embeddings":
        assert (count.text_events, "".join(count.texts)) == reference_parts(endpoint, delivered)


@given(answer=answers(), budget=st.integers(0, 300))
@settings(max_examples=100)
def test_what_is_held_stays_within_the_budget_or_one_item(answer: tuple[str, list[bytes]], budget: int) -> None:
    endpoint, delivered = answer
    count = OutputCount(endpoint, budget=budget)
    for data in delivered:
        count.add(data)
        assert count.held_bytes == sum(map(len, count.held)) <= max(budget, len(data))


def test_nothing_is_counted_for_embeddings_and_nothing_kept() -> None:
    text = json.dumps({"choices": [{"message": {"content": "not output"}}]}).encode()
    count = folded("embeddings", [text] * 10, budget=len(text))
    assert (count.text_events, count.texts, count.tokens()) == (0, [], 0)


# -- through the tap: the same settlement -----------------------------------------------------------------------


def cuts(raw: bytes) -> list[int]:
    """After every event, in the middle of every event, and the whole; for the long recordings (hundreds of
    events) after and in the middle of about 100 evenly spread events, the first ten and the last ten."""
    ends = [0, *event_ends(raw), len(raw)]
    if len(ends) > 150:
        ends = sorted({*ends[:10], *ends[::len(ends) // 100], *ends[-10:]})
    return sorted({*ends, *[(start + end) // 2 for start, end in itertools.pairwise(ends)]})


def settle(case: Case, body: bytes, *, budget: int, finish: bool, hide: bool) -> tuple[UsageEvent, ResponseTap]:
    tap = tap_for(case, hide_usage_chunk=hide)
    tap.output.budget = budget
    tap.feed(body)
    if finish:
        tap.finish()
    return settlement_for(replace(GRANT, endpoint=case.endpoint), tap), tap


@pytest.mark.parametrize("case", CASES, ids=case_ids)
def test_every_cut_of_every_fixture_settles_the_same_folded_or_not(case: Case) -> None:
    raw = case.raw
    for cut in cuts(raw):
        for finish in (False, True):
            for hide in (False, True) if case.endpoint == "chat_completions" else (False,):
                kept, _ = settle(case, raw[:cut], budget=FOLD_BUDGET, finish=finish, hide=hide)
                for budget in (0, 300):
                    event, _ = settle(case, raw[:cut], budget=budget, finish=finish, hide=hide)
                    assert event == kept, (cut, finish, hide, budget)


@pytest.mark.parametrize("case", CASES, ids=case_ids)
def test_a_short_answer_is_held_as_it_came_and_parsed_only_at_the_end(case: Case) -> None:
    # Below the budget the hot path only keeps references to the data it already had; the long recordings (a
    # web search turn of ~0.3 MiB) fold on the way, which is what the budget is for.
    tap = tap_for(case)
    tap.feed(case.raw)
    tap.finish()
    if len(case.raw) > FOLD_BUDGET:
        assert tap.output.text_events > 0 and tap.output.held_bytes <= FOLD_BUDGET
        return
    assert (tap.output.text_events, tap.output.texts) == (0, [])
    assert len(tap.output.held) == tap.events
    if not case.is_sse:
        assert tap.output.held == [case.raw]


def test_a_json_body_over_the_budget_is_one_item_held_whole_until_counted() -> None:
    body = json.dumps({"type": "message", "content": [{"type": "text", "text": "word " * 50_000}]}).encode()
    count = OutputCount("messages")
    count.add(body)
    assert len(body) > FOLD_BUDGET and count.held == [body] and count.texts == []  # not parsed on the way
    assert count.tokens() == reference_count("messages", [body]) >= 50_000


# -- bounded by the text ----------------------------------------------------------------------------------------

LONG = 20_000


def chat_chunk(text: str) -> bytes:
    chunk = {"id": "chatcmpl-C4HqHBe4xca0k0EzsCnf1t6V3YFXp", "object": "chat.completion.chunk",
             "created": 1755137933, "model": "gpt-4o-2024-08-06", "system_fingerprint": "fp_07871e2ad8",
             "choices": [{"index": 0, "delta": {"content": text}, "logprobs": None, "finish_reason": None}]}
    return b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"


def test_a_long_stream_holds_no_more_than_the_budget_plus_one_event_and_settles_exactly() -> None:
    events = [chat_chunk(f" token{i % 97}") for i in range(LONG)]
    largest = max(map(len, events))
    tap = ResponseTap("chat_completions", GRANT.model)
    tap.start(200, SSE)
    most_held = 0
    for event in events:
        tap.feed(event)
        most_held = max(most_held, tap.output.held_bytes)
        assert tap.output.held_bytes <= FOLD_BUDGET + largest
    # Cut off here, without usage: counted from what the client got, exactly as without folding.
    data = [event[len(b"data: "):-2] for event in events]
    settled = settlement_for(GRANT, tap)
    assert (settled.outcome, settled.estimated) == ("partial", True)
    assert settled.output_tokens == reference_count("chat_completions", data) >= LONG
    # What is kept besides: the text itself (about 9 bytes an event), in one string per fold.
    tap.output.fold()
    text = "".join(f" token{i % 97}" for i in range(LONG))
    assert "".join(tap.output.texts) == text and tap.output.text_events == LONG
    raw_total = sum(map(len, data))
    assert raw_total > 50 * FOLD_BUDGET and len(tap.output.texts) <= raw_total // (FOLD_BUDGET - largest) + 1
    assert FOLD_BUDGET - largest < most_held <= FOLD_BUDGET
