"""Conservation over real-shaped traffic: the mixed run of test_conservation, but with what tenants really send.

Multilingual prompts (the corpus in tests/fixtures/corpus: English, Chinese, Japanese, Korean, Russian, code, hex),
JSON tool schemas, inline photos and PDFs, answers the upstream compressed although asked not to, streams the client
abandons, clients that give up before the upstream answered, and Responses continuations (the provider bills the
stored context again): over both SDKs and every endpoint, concurrently.
Afterwards the books agree exactly as in test_conservation (one record per request, one ledger entry per charge,
balance moved by exactly the recorded costs in PostgreSQL and Redis, nothing held), and every request the upstream
completed is charged the usage it reported at the model's prices, to the micro-point.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path
from typing import Any

import anthropic
import openai

from tests.e2e.conftest import Gateway, TenantAccess, run_sync
from tests.e2e.test_conservation import Sent, assert_conserved, books, streamed_message

CORPUS = Path(__file__).parents[1] / "fixtures" / "corpus"
TEXTS = sorted(p.name for p in CORPUS.glob("*.txt"))
TOOLS: Any = json.loads((CORPUS / "tools.json").read_text())
START_POINTS = 10**12
CONCURRENCY = 12
PHOTO = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 2000).decode()
PDF = base64.b64encode(
    b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"
    b"2 0 obj\n<< /Type /Pages /Kids [3 0 R 4 0 R] /Count 2 >>\nendobj\n"
    b"3 0 obj\n<< /Type /Page /Parent 2 0 R >>\nendobj\n4 0 obj\n<< /Type /Page /Parent 2 0 R >>\nendobj\n%%EOF"
).decode()
ENCODINGS = ("gzip", "deflate", "br", "zstd")


def tool_schemas() -> list[dict[str, Any]]:
    """tools.json in both protocols' shapes."""
    return TOOLS if isinstance(TOOLS, list) else [TOOLS]


def openai_tools() -> list[dict[str, Any]]:
    out = []
    for tool in tool_schemas():
        function = tool.get("function", tool)
        out.append({"type": "function", "function": {
            "name": function["name"], "description": function.get("description", ""),
            "parameters": function.get("parameters", function.get("input_schema", {"type": "object"}))}})
    return out


def anthropic_tools() -> list[dict[str, Any]]:
    return [{"name": t["function"]["name"], "description": t["function"]["description"],
             "input_schema": t["function"]["parameters"]} for t in openai_tools()]


async def chat(oai: openai.AsyncOpenAI, content: Any, *, headers: dict[str, str] | None = None,
               stream: bool = False, abandon: bool = False, **extra: Any) -> Sent:
    messages: Any = [{"role": "user", "content": content}]
    if not stream:
        raw = await oai.chat.completions.with_raw_response.create(
            model="chat-a", messages=messages, max_tokens=64, extra_headers=headers or {}, **extra)
        return Sent(raw.headers["x-request-id"], "chat", False)
    streamed = await oai.chat.completions.with_raw_response.create(
        model="chat-a", messages=messages, max_tokens=64, stream=True, extra_headers=headers or {}, **extra)
    received = 0
    async for _ in streamed.parse():
        received += 1
        if abandon and received == 3:
            break
    return Sent(streamed.headers["x-request-id"], "chat", abandon)


async def message(claude: anthropic.AsyncAnthropic, content: Any, *, headers: dict[str, str] | None = None,
                  stream: bool = False, abandon: bool = False, **extra: Any) -> Sent:
    messages: Any = [{"role": "user", "content": content}]
    if not stream:
        raw = await claude.messages.with_raw_response.create(
            model="claude", max_tokens=64, messages=messages, extra_headers=headers or {}, **extra)
        return Sent(raw.headers["x-request-id"], "messages", False)
    return await streamed_message(claude, messages, headers or {}, abandon=abandon, **extra)


async def response(oai: openai.AsyncOpenAI, text: str) -> Sent:
    raw = await oai.responses.with_raw_response.create(model="chat-b", input=text, max_output_tokens=64)
    return Sent(raw.headers["x-request-id"], "responses", False)


async def conversation(oai: openai.AsyncOpenAI, text: str, *, stream: bool) -> list[Sent]:
    """A stored response, then a continuation of it (previous_response_id): the provider reads the stored context
    again, and bills it, though it is not in the body."""
    first = await oai.responses.with_raw_response.create(model="chat-b", input=text, max_output_tokens=64)
    previous = first.parse().id
    sent = [Sent(first.headers["x-request-id"], "responses", False)]
    if not stream:
        raw = await oai.responses.with_raw_response.create(model="chat-b", input="And then?", max_output_tokens=64,
                                                           previous_response_id=previous)
        return [*sent, Sent(raw.headers["x-request-id"], "responses", False)]
    streamed = await oai.responses.with_raw_response.create(model="chat-b", input="And then?", max_output_tokens=64,
                                                            previous_response_id=previous, stream=True)
    async for _ in streamed.parse():
        pass
    return [*sent, Sent(streamed.headers["x-request-id"], "responses", False)]


async def embedding(oai: openai.AsyncOpenAI, text: str) -> Sent:
    raw = await oai.embeddings.with_raw_response.create(model="embed", input=[text, text[:40]])
    return Sent(raw.headers["x-request-id"], "embeddings", False)


async def gave_up_before_the_answer(oai: openai.AsyncOpenAI, text: str) -> Sent:
    """The upstream has the prompt but has not answered when the client gives up: billed the input estimate."""
    impatient = oai.with_options(timeout=1.0, max_retries=0)
    try:
        await impatient.chat.completions.create(model="chat-a", messages=[{"role": "user", "content": text}],
                                                max_tokens=64, extra_headers={"x-mock-stall-after": "0"})
    except openai.APITimeoutError:
        pass
    else:
        raise AssertionError("the stalled answer arrived")
    return Sent("", "chat", True)  # its id is found afterwards: the client never saw a header


def corpus_requests(oai: openai.AsyncOpenAI, claude: anthropic.AsyncAnthropic) -> list[Any]:
    """Every traffic class, as coroutines that each return what they sent."""
    texts = {name: (CORPUS / name).read_text() for name in TEXTS}
    work: list[Any] = []
    for i, (_name, text) in enumerate(sorted(texts.items())):
        long_text = text * 6  # past the 8 KiB where the estimate samples instead of tokenizing all
        work += [chat(oai, text), chat(oai, text, stream=True), message(claude, text),
                 message(claude, long_text, stream=True), response(oai, text), embedding(oai, text),
                 chat(oai, text, stream=True, abandon=True, headers={"x-mock-chunks": "30", "x-mock-delay-ms": "20"}),
                 message(claude, text, stream=True, abandon=True,
                         headers={"x-mock-chunks": "30", "x-mock-delay-ms": "20"}),
                 chat(oai, text, headers={"x-mock-content-encoding": ENCODINGS[i % len(ENCODINGS)]}),
                 message(claude, text, stream=True, headers={"x-mock-content-encoding": ENCODINGS[i % 2 * 2]})]
    question = "Which tool fits: the weather in Kyoto tomorrow?"
    work += [chat(oai, question, tools=openai_tools()), chat(oai, question, stream=True, tools=openai_tools()),
             message(claude, question, tools=anthropic_tools()),
             message(claude, question, stream=True, tools=anthropic_tools())]
    photo_chat = [{"type": "text", "text": "What is in this photo?"},
                  {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PHOTO}"}}]
    photo_claude = [{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PHOTO}},
                    {"type": "text", "text": "What is in this photo?"}]
    pdf_chat = [{"type": "file", "file": {"filename": "report.pdf", "file_data": f"data:application/pdf;base64,{PDF}"}},
                {"type": "text", "text": "Summarise the report."}]
    pdf_claude = [{"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": PDF}},
                  {"type": "text", "text": "Summarise the report."}]
    work += [chat(oai, photo_chat), chat(oai, photo_chat, stream=True), message(claude, photo_claude),
             message(claude, photo_claude, stream=True), chat(oai, pdf_chat), message(claude, pdf_claude),
             gave_up_before_the_answer(oai, texts["zh.txt"]), gave_up_before_the_answer(oai, texts["en.txt"]),
             conversation(oai, texts["ja.txt"], stream=False), conversation(oai, texts["ru.txt"], stream=True)]
    return work


async def run_corpus(gateway: Gateway, access: TenantAccess) -> list[Sent]:
    oai = openai.AsyncOpenAI(base_url=gateway.base_url, api_key=access.key, default_headers=access.headers,
                             max_retries=0)
    claude = anthropic.AsyncAnthropic(base_url=gateway.origin, api_key=access.key, default_headers=access.headers,
                                      max_retries=0)
    limit = asyncio.Semaphore(CONCURRENCY)

    async def guarded(work: Any) -> list[Sent]:
        async with limit:
            done = await work
            return done if isinstance(done, list) else [done]

    try:
        return [s for batch in await asyncio.gather(*(guarded(w) for w in corpus_requests(oai, claude)))
                for s in batch]
    finally:
        await oai.close()
        await claude.close()


def test_points_are_conserved_over_a_multilingual_multimodal_corpus(gateway: Gateway) -> None:
    access = gateway.new_tenant(["chat-a", "chat-b", "claude", "embed"], points=START_POINTS)
    sent = run_sync(run_corpus(gateway, access))
    # The clients that gave up never saw their request id: their records are the tenant's two others.
    expected = len(TEXTS) * 10 + 4 + 8 + 4
    deadline = time.monotonic() + 30
    while len(records := run_sync(books(gateway, access.tenant_id))[1]) < expected:
        assert time.monotonic() < deadline, f"{len(records)} of {expected} requests settled"
        time.sleep(0.2)
    known = {s.request_id for s in sent if s.request_id}
    gave_up = [r["request_id"] for r in records if r["request_id"] not in known]
    assert len(gave_up) == 2
    sent = [s for s in sent if s.request_id] + [Sent(request_id, "chat", True) for request_id in gave_up]
    assert len({s.request_id for s in sent}) == expected
    assert_conserved(gateway, access, sent, START_POINTS)
    by_id = {r["request_id"]: r for r in records}
    for request_id in gave_up:  # the upstream had the prompt: its estimate, flagged
        row = by_id[request_id]
        assert (row["outcome"], row["estimated"], row["output_tokens"]) == ("partial", True, 0)
        assert row["input_tokens"] > 0 and row["cost"] == row["input_tokens"]  # 1 micro-point per input token
