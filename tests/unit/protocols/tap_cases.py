"""The recorded provider fixtures as tap test cases: what each must come out as, and helpers to run them."""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass

from lime.protocols.response_tap import ResponseTap
from lime.protocols.usage import Usage
from tests.provider_fixtures import provider_fixture

PUBLIC = "team-default"
SSE = "text/event-stream; charset=utf-8"
JSON = "application/json"

MESSAGE_START = b'"type":"message_start"'
MESSAGE_DELTA = b'"type":"message_delta"'
CHAT_USAGE_CHUNK = b'"choices":[],"usage":{'
RESPONSE_COMPLETED = b'"type":"response.completed"'


@dataclass(frozen=True)
class Case:
    name: str
    endpoint: str
    upstream_model: str
    #: (a needle on the data line that carries usage, the usage once that line is in), in stream order.
    usage_steps: tuple[tuple[bytes, Usage], ...] = ()
    #: A needle on the data line of the protocol's own end; ``None`` for a stream that never ends.
    end: bytes | None = None
    failed: bool = False
    #: Usage of a JSON body.
    body_usage: Usage | None = None

    @property
    def raw(self) -> bytes:
        return provider_fixture(self.name).read_bytes()

    @property
    def is_sse(self) -> bool:
        return self.name.endswith(".sse")

    @property
    def usage(self) -> Usage | None:
        return self.usage_steps[-1][1] if self.usage_steps else self.body_usage

    def expected(self, raw: bytes) -> bytes:
        """The fixture as the client must get it: the model id swapped, every other byte as it was."""
        out = raw
        for colon in (b":", b": "):
            out = out.replace(b'"model"' + colon + json.dumps(self.upstream_model).encode(),
                              b'"model"' + colon + json.dumps(PUBLIC).encode())
        return out


def chat(name: str, model: str, usage: Usage | None) -> Case:
    steps = ((CHAT_USAGE_CHUNK, usage),) if usage else ()
    return Case(name, "chat_completions", model, steps, end=b"data: [DONE]")


def responses(name: str, model: str, usage: Usage) -> Case:
    return Case(name, "responses", model, ((RESPONSE_COMPLETED, usage),), end=RESPONSE_COMPLETED)


def messages(name: str, model: str, start: Usage, delta: Usage | None, *, failed: bool = False) -> Case:
    steps = ((MESSAGE_START, start),) + (((MESSAGE_DELTA, delta),) if delta else ())
    return Case(name, "messages", model, steps, end=None if failed else b'"type":"message_stop"', failed=failed)


def body(name: str, endpoint: str, model: str, usage: Usage) -> Case:
    return Case(name, endpoint, model, body_usage=usage)


# The numbers are copied from the fixture files.
STREAMS = [
    chat("openai-chat-stream.sse", "gpt-5-nano-2025-08-07", None),  # no include_usage: no usage at all
    chat("openai-chat-stream-include-usage.sse", "gpt-4o-2024-08-06", Usage(input_tokens=14, output_tokens=8)),
    chat("openai-chat-stream-reasoning-usage.sse", "gpt-5-nano-2025-08-07",
         Usage(input_tokens=12, output_tokens=100, reasoning_tokens=100)),
    chat("openai-chat-stream-tool-call.sse", "gpt-4o-mini-2024-07-18", Usage(input_tokens=53, output_tokens=15)),
    responses("openai-responses-stream.sse", "gpt-5.2-2025-12-11", Usage(input_tokens=20, output_tokens=10)),
    responses("openai-responses-stream-function-call.sse", "gpt-5-2025-08-07",
              Usage(input_tokens=53, output_tokens=469, reasoning_tokens=448)),
    # message_delta's output_tokens is the cumulative total: 5, not 1 + 5.
    messages("anthropic-messages-stream.sse", "claude-sonnet-4-5-20250929",
             Usage(input_tokens=20, output_tokens=1), Usage(input_tokens=20, output_tokens=5)),
    messages("anthropic-messages-stream-sdk-basic.sse", "claude-3-opus-latest",
             Usage(input_tokens=11, output_tokens=1), Usage(input_tokens=11, output_tokens=6)),
    messages("anthropic-messages-stream-tool-use.sse", "claude-sonnet-4-20250514",
             Usage(input_tokens=377, output_tokens=1), Usage(input_tokens=377, output_tokens=65)),
    # Server tools (web search): message_delta reports the whole turn, its input past what message_start said
    # (each search's results are read as input; README facts 21-31), and a cache write the start did not show.
    messages("anthropic-messages-stream-web-search.sse", "claude-haiku-4-5-20251001",
             Usage(input_tokens=2247, output_tokens=26),
             Usage(input_tokens=2254, cache_write_tokens=17269, output_tokens=110,
                   server_tool_calls=(("web_search", 1),))),
    # A turn paused by the server (stop_reason pause_turn) is still a whole answer, then resumed by the client.
    messages("anthropic-messages-stream-web-search-pause-turn.sse", "claude-sonnet-4-5-20250929",
             Usage(input_tokens=2479, output_tokens=6),
             Usage(input_tokens=404500, output_tokens=943, server_tool_calls=(("web_search", 10),))),
    messages("anthropic-messages-stream-web-search-resumed.sse", "claude-sonnet-4-5-20250929",
             Usage(input_tokens=80251, output_tokens=1),
             Usage(input_tokens=482529, output_tokens=1310, server_tool_calls=(("web_search", 5),))),
    responses("openai-responses-stream-web-search.sse", "gpt-4.1-2025-04-14",
              Usage(input_tokens=17508, output_tokens=201, server_tool_calls=(("web_search", 1),))),
    # No message_delta ever comes: what message_start said is all there is.
    messages("anthropic-messages-stream-error.sse", "claude-3-opus-latest",
             Usage(input_tokens=11, output_tokens=1), None, failed=True),
]
BODIES = [
    body("openai-chat-completion-reasoning.json", "chat_completions", "gpt-5-nano-2025-08-07",
         Usage(input_tokens=27, output_tokens=267, reasoning_tokens=192)),
    body("openai-chat-completion-cached.json", "chat_completions", "gpt-5.6-sol",
         Usage(input_tokens=8, cached_input_tokens=4012, output_tokens=4)),  # 4012 of 4020 from the cache
    body("openai-responses.json", "responses", "gpt-5.6-sol",
         Usage(input_tokens=8, cached_input_tokens=4012, output_tokens=5)),
    body("openai-embeddings-float.json", "embeddings", "text-embedding-3-small", Usage(input_tokens=7)),
    body("openai-embeddings-base64.json", "embeddings", "text-embedding-3-small", Usage(input_tokens=7)),
    body("anthropic-messages-cache.json", "messages", "claude-sonnet-4-5-20250929",
         Usage(input_tokens=3, cached_input_tokens=1111, cache_write_tokens=403, output_tokens=33)),
    # Cache writes with a 1h TTL: one total, both TTLs in it (14 at 5m + 2056 at 1h; README fact 21), each priced
    # at its own rate.
    body("anthropic-messages-cache-1h.json", "messages", "claude-sonnet-4-20250514",
         Usage(input_tokens=3, cache_write_tokens=14, cache_write_1h_tokens=2056, output_tokens=459)),
    body("anthropic-messages-cache-1h-only.json", "messages", "claude-sonnet-4-20250514",
         Usage(input_tokens=17, cache_write_1h_tokens=2056, output_tokens=100)),
    # Web search: the results are read as input (and here written to the cache); thinking_tokens (26) are part
    # of output_tokens (fact 24), not added to them. Each search is a call, priced per call.
    body("anthropic-messages-web-search.json", "messages", "claude-sonnet-5",
         Usage(input_tokens=4, cached_input_tokens=2836, cache_write_tokens=11107, output_tokens=155,
               server_tool_calls=(("web_search", 1),))),
    body("openai-responses-web-search.json", "responses", "gpt-4.1-2025-04-14",
         # a ~40-token question: the rest is search results (fact 28)
         Usage(input_tokens=17391, output_tokens=45, server_tool_calls=(("web_search", 1),))),
    # Priority tier: the same usage fields, the tier beside them (fact 30).
    body("openai-chat-service-tier-priority.json", "chat_completions", "gpt-5-2025-08-07",
         Usage(input_tokens=8, output_tokens=82, reasoning_tokens=64)),
    body("openai-responses-service-tier-priority.json", "responses", "gpt-5-2025-08-07",
         Usage(input_tokens=8, output_tokens=15)),
    # Audio tokens are part of prompt_tokens and completion_tokens (fact 31): 19 + 2 audio = 21, 6 + 12 audio = 18.
    body("openai-chat-audio-input-usage.json", "chat_completions", "gpt-4o-audio-preview-2025-06-03",
         Usage(input_tokens=21, output_tokens=1, audio_input_tokens=2)),
    body("openai-chat-audio-output-usage.json", "chat_completions", "gpt-4o-mini-audio-preview-2024-12-17",
         Usage(input_tokens=22, output_tokens=18, audio_output_tokens=12)),
]
CASES = STREAMS + BODIES
case_ids = [case.name for case in CASES]


def tap_for(case: Case, *, hide_usage_chunk: bool = False) -> ResponseTap:
    tap = ResponseTap(case.endpoint, PUBLIC, hide_usage_chunk=hide_usage_chunk)
    tap.start(200, SSE if case.is_sse else JSON)
    return tap


def run(case: Case, chunks: list[bytes], *, hide_usage_chunk: bool = False) -> tuple[bytes, ResponseTap]:
    tap = tap_for(case, hide_usage_chunk=hide_usage_chunk)
    out = b"".join([tap.feed(chunk) for chunk in chunks])
    return out + tap.finish(), tap


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(data)]
    return [data[start:end] for start, end in itertools.pairwise(bounds)]


def line_end(raw: bytes, needle: bytes) -> int:
    """Where the line holding ``needle`` has fully arrived: after its last non-blank byte."""
    start = raw.index(needle)
    end = raw.find(b"\n", start)
    return len(raw[:len(raw) if end < 0 else end].rstrip())


def event_ends(raw: bytes) -> list[int]:
    return [match.end() for match in re.finditer(rb"\n\n", raw)]


def data_events(raw: bytes) -> int:
    return len(re.findall(rb"^data:", raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n"), re.MULTILINE))


def assert_whole(case: Case, out: bytes, tap: ResponseTap, raw: bytes | None = None) -> None:
    raw = case.raw if raw is None else raw
    assert out == case.expected(raw)
    assert tap.usage == case.usage
    assert tap.complete is (case.end is not None or not case.is_sse)
    assert tap.failed is case.failed
    assert tap.events == (data_events(raw) if case.is_sse else 1)


#: Line ends other than the recorded `\n`, which the SSE spec allows.
LINE_ENDS = {"crlf": b"\r\n", "cr": b"\r"}
