"""The input estimate a request is reserved (and, cut off before its usage, billed) at: text by the tokenizer,
media by per-part bounds, never by base64 size. The corpus is tests/fixtures/corpus (its README);
``python -m tests.unit.protocols.test_input_estimate`` prints the table that docs/billing.md shows."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lime.protocols.input_estimate import (
    AUDIO_BYTES_PER_TOKEN,
    FILE_REFERENCE_TOKENS,
    IMAGE_TOKENS,
    PDF_PAGE_TOKENS,
    estimate_input,
)
from lime.protocols.token_count import count_tokens

CORPUS = Path(__file__).resolve().parents[2] / "fixtures" / "corpus"
TEXTS = sorted(path.name for path in CORPUS.iterdir() if path.name != "README.md")
#: What a provider adds per message around its text (OpenAI: about three tokens), so "actual" is not too kind.
PER_MESSAGE = 4


def chat(*contents: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": content} for content in contents]}


def actual(*texts: str) -> int:
    """What a provider bills for these messages' text: its tokens plus the per-message overhead."""
    return sum(count_tokens(text) + PER_MESSAGE for text in texts)


def bytes_over_four(body: dict[str, Any]) -> int:
    """The estimate before: the body's JSON size / 4 (as an SDK sends it, non-ASCII escaped)."""
    return -(-len(json.dumps(body).encode()) // 4)


def pdf(pages: int) -> bytes:
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               b"<< /Type /Pages /Kids [" + b" ".join(b"%d 0 R" % (3 + i) for i in range(pages)) +
               b"] /Count %d >>" % pages]
    objects += [b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>"] * pages
    return b"%PDF-1.4\n" + b"".join(b"%d 0 obj\n%s\nendobj\n" % (i + 1, o) for i, o in enumerate(objects)) + b"%%EOF"


def data_url(media_type: str, data: bytes) -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


PHOTO = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 6000  # ~1.5 MB: a phone photo's size


@pytest.mark.parametrize("name", TEXTS)
def test_text_is_reserved_at_least_at_what_it_costs_and_not_far_above(name: str) -> None:
    text = (CORPUS / name).read_text()
    estimate = estimate_input(chat(text)).tokens
    assert actual(text) <= estimate <= actual(text) * 1.25 + 10


@pytest.mark.parametrize("name", ["zh.txt", "ja.txt", "ko.txt", "hex.txt"])
def test_the_texts_that_bytes_over_four_under_reserved_are_covered_now(name: str) -> None:
    text = (CORPUS / name).read_text()
    body = chat(text)
    raw_utf8 = -(-len(json.dumps(body, ensure_ascii=False).encode()) // 4)  # a client that sends raw UTF-8
    assert min(raw_utf8, bytes_over_four(body)) < actual(text) <= estimate_input(body).tokens


@pytest.mark.parametrize("part", [
    {"type": "image_url", "image_url": {"url": data_url("image/png", PHOTO), "detail": "high"}},  # chat
    {"type": "input_image", "image_url": data_url("image/jpeg", PHOTO)},  # responses
    {"type": "image", "source": {"type": "base64", "media_type": "image/png",  # messages
                                 "data": base64.b64encode(PHOTO).decode()}},
], ids=["chat", "responses", "messages"])
def test_a_photo_counts_as_an_image_not_as_its_base64(part: dict[str, Any]) -> None:
    body = chat([{"type": "text", "text": "What is in this photo?"}, part])
    estimate = estimate_input(body)
    assert (estimate.media_parts, estimate.media_tokens, estimate.images) == (1, IMAGE_TOKENS, 1)
    assert estimate.tokens < IMAGE_TOKENS + 50
    assert bytes_over_four(body) > 100 * estimate.tokens  # ~500,000 before


def test_a_model_that_counts_images_higher_holds_each_at_its_own_count() -> None:
    """gpt-4o-mini multiplies its image tokens ~33x: its sheet's image_tokens replaces the default per image, and
    only per image (the text, a PDF and audio are counted as before)."""
    audio = {"type": "input_audio", "input_audio": {"data": base64.b64encode(bytes(4000)).decode(), "format": "wav"}}
    body = chat([{"type": "text", "text": "Compare these."},
                 {"type": "image_url", "image_url": {"url": data_url("image/png", PHOTO)}},
                 {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}, audio])
    default = estimate_input(body)
    assert (default.images, default.audio_tokens) == (2, 10)
    assert default.with_image_tokens(None) == default
    mini = default.with_image_tokens(48_000)
    assert mini.tokens - default.tokens == 2 * (48_000 - IMAGE_TOKENS)
    assert (mini.media_parts, mini.images, mini.audio_tokens) == (default.media_parts, 2, 10)
    assert estimate_input(chat("no image")).with_image_tokens(48_000) == estimate_input(chat("no image"))


@pytest.mark.parametrize("part", [
    {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
    {"type": "input_image", "file_id": "file-abc"},
    {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
])
def test_an_image_the_upstream_fetches_counts_as_an_image(part: dict[str, Any]) -> None:
    assert estimate_input(chat([part])).media_tokens == IMAGE_TOKENS


@pytest.mark.parametrize("pages", [1, 3, 12])
def test_a_pdf_counts_by_its_pages(pages: int) -> None:
    document = pdf(pages)
    anthropic = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                                "data": base64.b64encode(document).decode()}}
    openai_chat = {"type": "file", "file": {"filename": "a.pdf", "file_data": data_url("application/pdf", document)}}
    responses = {"type": "input_file", "filename": "a.pdf", "file_data": data_url("application/pdf", document)}
    for part in (anthropic, openai_chat, responses):
        assert estimate_input(chat([part])).media_tokens == pages * PDF_PAGE_TOKENS


def test_a_file_the_upstream_fetches_counts_its_bound() -> None:
    assert estimate_input(chat([{"type": "input_file", "file_id": "file-abc"}])).media_tokens == FILE_REFERENCE_TOKENS


def test_audio_counts_by_its_decoded_size() -> None:
    audio = bytes(160_000)  # 10 s of 16 kB/s
    part = {"type": "input_audio", "input_audio": {"data": base64.b64encode(audio).decode(), "format": "wav"}}
    estimate = estimate_input(chat([part]))
    assert estimate.media_tokens == estimate.audio_tokens == len(audio) // AUDIO_BYTES_PER_TOKEN


def test_token_ids_count_one_each() -> None:
    assert estimate_input({"model": "e", "input": [[1, 2, 3], [4, 5]]}).tokens >= 5
    assert estimate_input({"model": "e", "input": list(range(1000))}).tokens >= 1000


@pytest.mark.parametrize("names", [["zh.txt"], ["en.txt", "code.py.txt"], ["code.py.txt", "en.txt"]])
def test_a_long_text_is_counted_at_its_densest_rate(names: list[str]) -> None:
    # Past what is tokenized whole: prose then code, or code then prose, is never under-reserved.
    parts = [(CORPUS / name).read_text() * 300 for name in names]
    estimate = estimate_input(chat(*parts)).tokens
    assert actual(*parts) <= estimate <= actual(*parts) * 1.35


def test_deep_nesting_is_no_error() -> None:
    body: Any = "deep"
    for _ in range(50_000):
        body = {"a": body}
    assert estimate_input({"model": "m", "x": body}).tokens > 0


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                max_size=4), max_leaves=30))
def test_any_json_gives_an_estimate(value: Any) -> None:
    assert estimate_input({"model": "m", "messages": value}).tokens >= 1


def table() -> str:
    rows = ["| class | provider's count (cl100k + 4/message) | bytes / 4 before, escaped JSON | before, raw UTF-8 | "
            "estimate now | now / actual |", "|---|---|---|---|---|---|"]
    for name in TEXTS:
        text = (CORPUS / name).read_text()
        body, real = chat(text), actual(text)
        now = estimate_input(body).tokens
        raw = -(-len(json.dumps(body, ensure_ascii=False).encode()) // 4)
        rows.append(f"| {name} | {real} | {bytes_over_four(body)} | {raw} | {now} | {now / real:.2f} |")
    photo = chat([{"type": "image_url", "image_url": {"url": data_url("image/png", PHOTO)}}])
    rows.append(f"| 1.5 MB photo | 1,000-4,000 (provider's formula) | {bytes_over_four(photo):,} | "
                f"{bytes_over_four(photo):,} | {estimate_input(photo).tokens:,} | — |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(table())


@pytest.mark.parametrize("kind", [["string", "null"], {"const": "x"}, None, 3])
def test_a_type_that_is_not_a_string_is_text_not_a_crash(kind: object) -> None:
    # Codex CLI's tool schemas carry `"type": [..]`: authz failed every one of its requests with a 500.
    body = {"tools": [{"type": "function", "parameters": {"properties": {"cmd": {"type": kind, "data": "x"}}}}]}
    assert estimate_input(body).media_parts == 0
