"""The public endpoints Lime serves: one spec per endpoint, and the matching of a request line to one.

A spec (:class:`Endpoint`) is a frozen value that says everything the rest of Lime asks about an endpoint: its
path, method and protocol (hence its error shape), the kind of model it serves, where the model and ``stream``
live in the body, its output cap fields and which one Lime sets, whether streamed usage must be asked for, how
usage is read from a JSON body and from the stream, how a cut-off answer's text is counted, and which upstream
response headers pass. authz, extproc, the response tap, settlement and the catalog ask the spec; no other module
compares endpoint names. Adding an endpoint is one new spec here plus its tests (docs/architecture.md).

A request is matched here before anything else, and this is the one place that answers a path Lime does not
serve: a 404 ``unknown_url`` naming the request line and the coverage matrix (docs/protocols.md), and a 405 for a
wrong method. Both come before the credentials are read: what Lime serves is public (the matrix), so a stranger
learns nothing from it, and a client gets "not served" rather than a key error it cannot fix. The error is in the
shape of the client's protocol: Anthropic's on Anthropic's paths, and on any path Lime serves no OpenAI endpoint
at when the client sends ``anthropic-version`` (every Anthropic SDK does; no OpenAI SDK does), so
``/v1/models``, ``/v1/files`` or ``/v1/skills`` from the Anthropic SDK get Anthropic's shape.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from lime.protocols.answer_text import chat_texts, completions_texts, messages_texts, responses_texts
from lime.protocols.errors import MethodNotAllowed, NotFound
from lime.protocols.prompt_count import completions_answers
from lime.protocols.stream_readers import (
    StreamReader,
    read_chat_event,
    read_messages_event,
    read_responses_event,
)
from lime.protocols.usage import Usage, anthropic_usage, chat_usage, embeddings_usage, responses_usage

__all__ = ["COVERAGE_DOC", "ENDPOINTS", "PASSED_RESPONSE_HEADERS", "Endpoint", "ModelKind", "Protocol",
           "endpoint_named", "endpoint_protocol", "error_protocol", "match_endpoint", "path_argument"]

#: Where a client is sent for what Lime serves: the coverage matrix of every OpenAI and Anthropic endpoint.
COVERAGE_DOC = "docs/protocols.md"
#: A path longer than this is cut in the error that names it: the answer stays small whatever was sent.
_NAMED_PATH_CHARS = 200

#: The upstream response headers a client may see, unless a spec says otherwise. An allowlist, not a denylist:
#: upstreams add headers over time (organisation and project ids, their own request ids, their rate-limit
#: windows, Cloudflare cookies), and none of them should reach a Lime client by default. What passes is what
#: describes the body and how to retry; Envoy adds ``x-request-id`` and ``server`` itself.
PASSED_RESPONSE_HEADERS = frozenset({
    "content-type",
    "content-encoding",
    "cache-control",
    "date",
    "vary",
    # How and when to retry, as the SDKs read them.
    "retry-after",
    "retry-after-ms",
    "x-should-retry",
})


class Protocol(StrEnum):
    OPENAI = "openai"
    ANTHROPIC = "anthropic"


class ModelKind(StrEnum):
    CHAT = "chat"
    EMBEDDING = "embedding"


@dataclass(frozen=True)
class Endpoint:
    """One public endpoint: everything the gateway asks about it."""

    #: Its name in grants, usage records and metric labels.
    name: str
    path: str
    method: str
    #: The protocol it speaks, and so the shape of its errors.
    protocol: Protocol
    #: The kind of model this endpoint serves; ``None`` for the model directory, which needs no model.
    kind: ModelKind | None
    #: Whether the request carries a JSON body with a ``model``.
    has_body: bool = True
    #: Where the model and the streaming switch live in the body.
    model_field: str = "model"
    stream_field: str = "stream"
    #: The output cap fields it honours; the first is where Lime writes the package default when the client set
    #: none. Empty: no output to cap or reserve (embeddings).
    cap_fields: tuple[str, ...] = ()
    #: The provider's own output cap for a request that sets none, when it is smaller than a package's default
    #: would be (legacy completions: 16). Lime writes the smaller of the two, so a client gets the answer length
    #: the provider documents and is reserved for no more. ``None``: the package default.
    default_cap: int | None = None
    #: Streamed usage comes only when asked for: the option object and its switch Lime sets (chat's
    #: ``stream_options.include_usage``), and whose traces it hides again from a client that did not ask.
    stream_usage_option: tuple[str, str] | None = None
    #: How usage is read from a whole JSON answer (its ``usage`` object).
    json_usage: Callable[[Any], Usage | None] | None = None
    #: How each event of a streamed answer is read (usage, end, error); ``None``: not streamed.
    stream_reader: StreamReader | None = None
    #: Its events repeat their name as the JSON ``type``: a relay that sends only ``data:`` lines still names them.
    events_named_by_type: bool = False
    #: The text of an event or a whole answer, which a cut-off answer is counted by; ``None``: no text output, so
    #: nothing is counted (an embeddings answer cut off costs its input).
    texts: Callable[[dict[str, Any]], list[str]] | None = None
    #: The upstream response headers its clients may see.
    response_headers: frozenset[str] = PASSED_RESPONSE_HEADERS
    #: How many answers a body asks for, each up to the cap; ``None``: chat's ``n`` (1 when absent).
    answers: Callable[[dict[str, Any]], int] | None = None
    #: Whether the provider charges it. An endpoint that is not billed (count_tokens) holds no points and is
    #: settled at 0, but is still counted against the package's request rate and requests in flight.
    billed: bool = True
    #: Its answers may be stored by the upstream under their own id (Responses): Lime records each one's owner
    #: and upstream, and a continuation (``previous_response_id``) is checked against that record.
    records_answers: bool = False
    #: Its path names a stored answer (``{response_id}``): the model and upstream come from that answer's record,
    #: and only the tenant that created it is served (the Responses lifecycle).
    on_stored_answer: bool = False
    #: It deletes the stored answer it names: once the upstream confirms, Lime's record goes too.
    deletes_stored_answer: bool = False


CHAT_COMPLETIONS = Endpoint(
    "chat_completions", "/v1/chat/completions", "POST", Protocol.OPENAI, ModelKind.CHAT,
    # `max_completion_tokens` first: OpenAI's reasoning models refuse `max_tokens`.
    cap_fields=("max_completion_tokens", "max_tokens"),
    stream_usage_option=("stream_options", "include_usage"),
    json_usage=chat_usage, stream_reader=read_chat_event, texts=chat_texts,
)
RESPONSES = Endpoint(
    "responses", "/v1/responses", "POST", Protocol.OPENAI, ModelKind.CHAT,
    cap_fields=("max_output_tokens",),
    json_usage=responses_usage, stream_reader=read_responses_event, events_named_by_type=True,
    texts=responses_texts, records_answers=True,
)
#: The Responses lifecycle: free at the provider, served from the upstream that holds the response. Their answers
#: (a response object, a deletion, a list of items) are passed with the model id rewritten, nothing else read.
RESPONSES_RETRIEVE = Endpoint(
    "responses_retrieve", "/v1/responses/{response_id}", "GET", Protocol.OPENAI, ModelKind.CHAT,
    has_body=False, billed=False, on_stored_answer=True,
)
RESPONSES_DELETE = Endpoint(
    "responses_delete", "/v1/responses/{response_id}", "DELETE", Protocol.OPENAI, ModelKind.CHAT,
    has_body=False, billed=False, on_stored_answer=True, deletes_stored_answer=True,
)
RESPONSES_CANCEL = Endpoint(
    "responses_cancel", "/v1/responses/{response_id}/cancel", "POST", Protocol.OPENAI, ModelKind.CHAT,
    has_body=False, billed=False, on_stored_answer=True,
)
RESPONSES_INPUT_ITEMS = Endpoint(
    "responses_input_items", "/v1/responses/{response_id}/input_items", "GET", Protocol.OPENAI, ModelKind.CHAT,
    has_body=False, billed=False, on_stored_answer=True,
)
EMBEDDINGS = Endpoint(
    "embeddings", "/v1/embeddings", "POST", Protocol.OPENAI, ModelKind.EMBEDDING, json_usage=embeddings_usage,
)
MESSAGES = Endpoint(
    "messages", "/v1/messages", "POST", Protocol.ANTHROPIC, ModelKind.CHAT,
    cap_fields=("max_tokens",),
    json_usage=anthropic_usage, stream_reader=read_messages_event, events_named_by_type=True,
    texts=messages_texts,
)
#: Anthropic's token counter (the SDKs' ``messages.count_tokens``, Claude Code's context tracking): free at the
#: provider, answered ``{"input_tokens": N}``.
COUNT_TOKENS = Endpoint(
    "count_tokens", "/v1/messages/count_tokens", "POST", Protocol.ANTHROPIC, ModelKind.CHAT, billed=False,
)
#: Legacy text completions (code-completion tools' fill-in-the-middle: ``prompt`` and ``suffix``). Its answers and
#: its streamed usage are chat's in shape (``choices[].text`` instead of ``delta.content``; usage only when asked,
#: in a last chunk with ``"choices": []``), so chat's usage and stream readers serve.
COMPLETIONS = Endpoint(
    "completions", "/v1/completions", "POST", Protocol.OPENAI, ModelKind.CHAT,
    cap_fields=("max_tokens",),
    # OpenAI: "max_tokens ... Defaults to 16" (https://platform.openai.com/docs/api-reference/completions/create).
    default_cap=16,
    stream_usage_option=("stream_options", "include_usage"),
    json_usage=chat_usage, stream_reader=read_chat_event, texts=completions_texts, answers=completions_answers,
)
MODELS = Endpoint("models", "/v1/models", "GET", Protocol.OPENAI, None, has_body=False)
ENDPOINTS: tuple[Endpoint, ...] = (CHAT_COMPLETIONS, RESPONSES, EMBEDDINGS, MESSAGES, COUNT_TOKENS, COMPLETIONS,
                                   MODELS, RESPONSES_RETRIEVE, RESPONSES_DELETE, RESPONSES_CANCEL,
                                   RESPONSES_INPUT_ITEMS)
_BY_PATH = {endpoint.path: endpoint for endpoint in ENDPOINTS if "{" not in endpoint.path}
#: Paths with a parameter (``{response_id}``), matched segment by segment; one path may serve several methods.
_TEMPLATED = tuple(endpoint for endpoint in ENDPOINTS if "{" in endpoint.path)
_BY_NAME = {endpoint.name: endpoint for endpoint in ENDPOINTS}
_ANTHROPIC = tuple(endpoint for endpoint in ENDPOINTS if endpoint.protocol is Protocol.ANTHROPIC)


def _strip_query(path: str) -> str:
    # A trailing slash is not stripped: the path is forwarded as sent, and upstreams do not know `.../`.
    return path.split("?", 1)[0]


def endpoint_named(name: str) -> Endpoint | None:
    """The spec of an endpoint by its name (as carried in a grant); ``None`` for a name Lime does not serve."""
    return _BY_NAME.get(name)


def endpoint_protocol(name: str) -> Protocol:
    """The protocol of an endpoint by its name (as carried in a grant); OpenAI for names it does not know."""
    endpoint = _BY_NAME.get(name)
    return endpoint.protocol if endpoint is not None else Protocol.OPENAI


#: What the ids in templated paths start with: a path whose parameter does not is another endpoint.
_STORED_ID_PREFIXES = ("resp_",)


def _path_arguments(template: str, path: str) -> list[str] | None:
    """The values of a template's ``{...}`` segments in ``path``, or ``None`` when the path is not of it."""
    expected, actual = template.split("/"), path.split("/")
    if len(expected) != len(actual):
        return None
    arguments = []
    for want, got in zip(expected, actual, strict=True):
        if want.startswith("{"):
            if not got:
                return None
            arguments.append(got)
        elif want != got:
            return None
    return arguments


def path_argument(endpoint: Endpoint, path: str) -> str:
    """The value of the endpoint's one path parameter (the response id of ``/v1/responses/{response_id}``);
    ``""`` when it has none."""
    arguments = _path_arguments(endpoint.path, _strip_query(path))
    return arguments[0] if arguments else ""


def match_endpoint(method: str, path: str) -> Endpoint:
    """The endpoint for a request line, or :class:`NotFound` / :class:`MethodNotAllowed`."""
    bare = _strip_query(path)
    method = method.upper()
    endpoint = _BY_PATH.get(bare)
    if endpoint is None and bare.startswith(MODELS.path + "/") and bare != MODELS.path + "/":
        endpoint = MODELS
    candidates = [endpoint] if endpoint is not None else [
        spec for spec in _TEMPLATED if _path_arguments(spec.path, bare) is not None]
    if not candidates:
        named = bare if len(bare) <= _NAMED_PATH_CHARS else bare[:_NAMED_PATH_CHARS] + "..."
        raise NotFound(f"Lime does not serve {method} {named}; see {COVERAGE_DOC} for what it serves.",
                       code="unknown_url")
    for candidate in candidates:
        if method == candidate.method:
            return candidate
    if endpoint is None and not any(argument.startswith(_STORED_ID_PREFIXES)
                                    for spec in candidates for argument in _path_arguments(spec.path, bare) or []):
        # Not a stored response's path under the wrong method but another endpoint (POST /v1/responses/compact).
        named = bare if len(bare) <= _NAMED_PATH_CHARS else bare[:_NAMED_PATH_CHARS] + "..."
        raise NotFound(f"Lime does not serve {method} {named}; see {COVERAGE_DOC} for what it serves.",
                       code="unknown_url")
    allowed = " or ".join(candidate.method for candidate in candidates)
    raise MethodNotAllowed(f"Method {method} is not allowed on {bare}; use {allowed}.")


def error_protocol(path: str, headers: Mapping[str, str]) -> Protocol:
    """Which error shape a client on this path understands. ``headers`` keys are lower case."""
    bare = _strip_query(path)
    for endpoint in _ANTHROPIC:
        if bare == endpoint.path or bare.startswith(endpoint.path + "/"):
            return Protocol.ANTHROPIC
    served = _BY_PATH.get(bare)
    if served is not None and served.protocol is Protocol.OPENAI and served is not MODELS:
        return Protocol.OPENAI  # an OpenAI endpoint: an OpenAI client, whatever else it sends
    return Protocol.ANTHROPIC if "anthropic-version" in headers else Protocol.OPENAI
