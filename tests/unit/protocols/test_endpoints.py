from __future__ import annotations

from pathlib import Path

import pytest

from lime.protocols.endpoints import COVERAGE_DOC, ENDPOINTS, Protocol, error_protocol, match_endpoint, path_argument
from lime.protocols.errors import MethodNotAllowed, NotFound


@pytest.mark.parametrize(
    ("method", "path", "name"),
    [
        ("POST", "/v1/chat/completions", "chat_completions"),
        ("POST", "/v1/chat/completions?x=1", "chat_completions"),
        ("POST", "/v1/responses", "responses"),
        ("POST", "/v1/embeddings", "embeddings"),
        ("POST", "/v1/messages", "messages"),
        ("GET", "/v1/models", "models"),
        ("GET", "/v1/models/chat-a", "models"),
        ("GET", "/v1/models/org/model", "models"),
        ("post", "/v1/messages", "messages"),
        ("POST", "/v1/messages/count_tokens", "count_tokens"),
        ("POST", "/v1/messages/count_tokens?beta=true", "count_tokens"),
        ("POST", "/v1/completions", "completions"),
        ("GET", "/v1/responses/resp_abc", "responses_retrieve"),
        ("GET", "/v1/responses/resp_abc?include[]=x", "responses_retrieve"),
        ("DELETE", "/v1/responses/resp_abc", "responses_delete"),
        ("POST", "/v1/responses/resp_abc/cancel", "responses_cancel"),
        ("GET", "/v1/responses/resp_abc/input_items?limit=5", "responses_input_items"),
    ],
)
def test_known_endpoints(method: str, path: str, name: str) -> None:
    assert match_endpoint(method, path).name == name


@pytest.mark.parametrize("path", ["/", "/v1", "/v1/chat", "/v2/chat/completions", "/v1/modelsx", "/admin/tenants",
                                  "/v1/chat/completions/", "/v1/messages/count_tokens/", "/v1/messages/batches",
                                  "/v1/responses/", "/v1/responses//cancel", "/v1/responses/resp_abc/other",
                                  "/v1/responses/resp_abc/cancel/x"])
def test_unknown_paths_are_404(path: str) -> None:
    with pytest.raises(NotFound):
        match_endpoint("POST", path)


def test_wrong_method_is_405() -> None:
    with pytest.raises(MethodNotAllowed) as caught:
        match_endpoint("GET", "/v1/chat/completions")
    assert "POST" in caught.value.message


def test_a_templated_path_serves_several_methods_and_names_the_others_in_a_405() -> None:
    with pytest.raises(MethodNotAllowed) as caught:
        match_endpoint("POST", "/v1/responses/resp_abc")
    assert "GET or DELETE" in caught.value.message
    with pytest.raises(MethodNotAllowed):
        match_endpoint("GET", "/v1/responses/resp_abc/cancel")


@pytest.mark.parametrize("path", ["/v1/responses/compact", "/v1/responses/input_tokens"])
def test_an_endpoint_beside_a_templated_one_is_not_served_rather_than_misused(path: str) -> None:
    # Codex CLI's remote compaction is POST /v1/responses/compact: not a response id to be told "use GET".
    with pytest.raises(NotFound) as caught:
        match_endpoint("POST", path)
    assert f"does not serve POST {path}" in caught.value.message and COVERAGE_DOC in caught.value.message


def test_the_response_id_is_read_from_the_path() -> None:
    spec = match_endpoint("GET", "/v1/responses/resp_abc/input_items?after=x")
    assert path_argument(spec, "/v1/responses/resp_abc/input_items?after=x") == "resp_abc"
    assert path_argument(match_endpoint("POST", "/v1/responses"), "/v1/responses") == ""


def test_error_protocol_follows_the_path_and_anthropic_version() -> None:
    assert error_protocol("/v1/messages", {}) is Protocol.ANTHROPIC
    assert error_protocol("/v1/messages/count_tokens", {}) is Protocol.ANTHROPIC
    assert error_protocol("/v1/chat/completions", {"anthropic-version": "x"}) is Protocol.OPENAI
    assert error_protocol("/v1/models", {}) is Protocol.OPENAI
    assert error_protocol("/v1/models/x", {"anthropic-version": "2023-06-01"}) is Protocol.ANTHROPIC
    assert error_protocol("/nope", {}) is Protocol.OPENAI
    # Paths Lime does not serve: the Anthropic SDK (it always sends anthropic-version) gets Anthropic's errors.
    assert error_protocol("/v1/messages/batches", {}) is Protocol.ANTHROPIC
    assert error_protocol("/v1/files", {"anthropic-version": "2023-06-01"}) is Protocol.ANTHROPIC
    assert error_protocol("/v1/skills?beta=true", {"anthropic-version": "2023-06-01"}) is Protocol.ANTHROPIC
    assert error_protocol("/v1/files", {}) is Protocol.OPENAI
    assert error_protocol("/v1/completions", {"anthropic-version": "2023-06-01"}) is Protocol.OPENAI


@pytest.mark.parametrize(("method", "path"), [("POST", "/v1/images/generations"), ("get", "/v1/files/file-abc"),
                                              ("POST", "/v1/messages/batches"), ("DELETE", "/v1/skills/s?x=1")])
def test_an_unserved_path_is_named_with_the_coverage_matrix(method: str, path: str) -> None:
    with pytest.raises(NotFound) as caught:
        match_endpoint(method, path)
    assert caught.value.message == (f"Lime does not serve {method.upper()} {path.split('?')[0]}; "
                                    "see docs/protocols.md for what it serves.")
    assert caught.value.openai_code == "unknown_url"


def test_a_long_path_is_cut_in_the_message() -> None:
    with pytest.raises(NotFound) as caught:
        match_endpoint("POST", "/v1/" + "x" * 10_000)
    assert len(caught.value.message) < 300


def test_the_coverage_matrix_names_every_served_endpoint() -> None:
    matrix = (Path(__file__).resolve().parents[3] / COVERAGE_DOC).read_text()
    for endpoint in ENDPOINTS:
        assert f"`{endpoint.method} {endpoint.path}`" in matrix, endpoint.name
