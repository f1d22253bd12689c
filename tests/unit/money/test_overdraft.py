"""What a request may cost beyond its hold: only the files the upstream fetches are unseen."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from lime.money.overdraft import UNSEEN_FILE_TOKENS, exposure_of
from lime.money.price_sheet import LongContext, PriceSheet, Rates
from lime.protocols.input_estimate import IMAGE_TOKENS, estimate_input

MODEL = PriceSheet(Rates(input=3_000_000, output=15_000_000))


def test_text_inline_media_and_referenced_images_are_seen() -> None:
    body = {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is in these?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]}
    estimate = estimate_input(body)
    assert estimate.media_tokens == 2 * IMAGE_TOKENS
    assert exposure_of(estimate, MODEL) == 0


def test_each_fetched_file_may_fill_a_context_window() -> None:
    body = {"input": [{"role": "user", "content": [
        {"type": "input_file", "file_id": "file-1"},
        {"type": "input_file", "file_url": "https://example.com/report.pdf"},
        {"type": "input_text", "text": "Compare them."}]}]}
    estimate = estimate_input(body)
    assert estimate.file_references == 2
    assert exposure_of(estimate, MODEL) == 2 * UNSEEN_FILE_TOKENS * 3


@given(st.integers(0, 50), st.integers(0, 10**9))
def test_exposure_is_the_unseen_tokens_at_the_input_price_rounded_up(files: int, price: int) -> None:
    model = PriceSheet(Rates(input=price))
    estimate = estimate_input({"messages": [{"role": "user", "content": [
        {"type": "file", "file": {"file_id": f"file-{i}"}} for i in range(files)]}]})
    exposure = exposure_of(estimate, model)
    unseen_cost = files * UNSEEN_FILE_TOKENS * price
    assert exposure * 1_000_000 >= unseen_cost > (exposure - 1) * 1_000_000 or exposure == unseen_cost == 0


def test_a_fetched_file_may_carry_the_request_into_long_context_rates() -> None:
    sheet = PriceSheet(Rates(input=3_000_000, output=15_000_000),
                       long_context=LongContext(200_000, Rates(input=6_000_000, output=22_500_000)))
    estimate = estimate_input({"input": [{"role": "user", "content": [
        {"type": "input_file", "file_id": "file-1"}, {"type": "input_text", "text": "Summarise it."}]}]})
    # Seen: ~50,000 tokens held at 3 a token; worst case: ~200,000 at 6 a token.
    assert exposure_of(estimate, sheet) == (estimate.tokens + UNSEEN_FILE_TOKENS) * 6 - estimate.tokens * 3
