"""The public endpoints Lime serves, and which protocol and kind of model each one speaks.

A request is matched here before anything else: an unknown path is a 404 and a wrong method a 405, both in the
OpenAI shape unless the path is Anthropic's. ``/v1/models`` answers in Anthropic's shape when the client sends
``anthropic-version`` (that is how the Anthropic SDK identifies itself).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from lime.protocols.errors import MethodNotAllowed, NotFound

__all__ = ["ENDPOINTS", "Endpoint", "ModelKind", "Protocol", "endpoint_protocol", "error_protocol", "match_endpoint"]


class Protocol(StrEnum):
    OPENAI = "openai"
    ANTHROPIC = "anthropic"


class ModelKind(StrEnum):
    CHAT = "chat"
    EMBEDDING = "embedding"


@dataclass(frozen=True)
class Endpoint:
    name: str
    path: str
    method: str
    protocol: Protocol
    #: The kind of model this endpoint serves; ``None`` for the model directory, which needs no model.
    kind: ModelKind | None
    #: Whether the request carries a JSON body with a ``model``.
    has_body: bool = True


MODELS = Endpoint("models", "/v1/models", "GET", Protocol.OPENAI, None, has_body=False)
ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("chat_completions", "/v1/chat/completions", "POST", Protocol.OPENAI, ModelKind.CHAT),
    Endpoint("responses", "/v1/responses", "POST", Protocol.OPENAI, ModelKind.CHAT),
    Endpoint("embeddings", "/v1/embeddings", "POST", Protocol.OPENAI, ModelKind.EMBEDDING),
    Endpoint("messages", "/v1/messages", "POST", Protocol.ANTHROPIC, ModelKind.CHAT),
    MODELS,
)
_BY_PATH = {endpoint.path: endpoint for endpoint in ENDPOINTS}
_BY_NAME = {endpoint.name: endpoint for endpoint in ENDPOINTS}


def _strip_query(path: str) -> str:
    # A trailing slash is not stripped: the path is forwarded as sent, and upstreams do not know `.../`.
    return path.split("?", 1)[0]


def endpoint_protocol(name: str) -> Protocol:
    """The protocol of an endpoint by its name (as carried in a grant); OpenAI for names it does not know."""
    endpoint = _BY_NAME.get(name)
    return endpoint.protocol if endpoint is not None else Protocol.OPENAI


def match_endpoint(method: str, path: str) -> Endpoint:
    """The endpoint for a request line, or :class:`NotFound` / :class:`MethodNotAllowed`."""
    bare = _strip_query(path)
    endpoint = _BY_PATH.get(bare)
    if endpoint is None and bare.startswith(MODELS.path + "/") and bare != MODELS.path + "/":
        endpoint = MODELS
    if endpoint is None:
        raise NotFound(f"Unknown request URL: {method} {bare}. Please check the URL and method.",
                       code="unknown_url")
    if method.upper() != endpoint.method:
        raise MethodNotAllowed(f"Method {method.upper()} is not allowed on {bare}; use {endpoint.method}.")
    return endpoint


def error_protocol(path: str, headers: Mapping[str, str]) -> Protocol:
    """Which error shape a client on this path understands. ``headers`` keys are lower case."""
    bare = _strip_query(path)
    if bare == "/v1/messages" or bare.startswith("/v1/messages/"):
        return Protocol.ANTHROPIC
    if bare.startswith(MODELS.path) and "anthropic-version" in headers:
        return Protocol.ANTHROPIC
    return Protocol.OPENAI
