"""authz's answers in Envoy's HTTP ext_authz mode (lime/envoy/authz_http.py), read back the way Envoy reads them:
a status line, headers and a body of content-length bytes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lime.envoy import authz_http
from lime.money.grant import Grant
from lime.protocols.endpoints import Protocol
from lime.protocols.error_bodies import ErrorReply, render_error
from lime.protocols.errors import QuotaExceeded, RateLimited, ServiceUnavailable


def parse(answer: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    version, status, _ = status_line.split(" ", 2)
    assert version == "HTTP/1.1"
    headers = [(name.lower(), value.strip()) for name, _, value in (line.partition(":") for line in lines)]
    assert int(dict(headers)["content-length"]) == len(body)
    return int(status), headers, body


def test_an_allowing_answer_carries_the_grant_as_headers_envoy_turns_into_metadata() -> None:
    grant = Grant(request_id="r-1", tenant_id="t-1", key_id="k-1", endpoint="chat", model="chat-a", upstream="mock",
                  upstream_model="gpt-x", stream=False, reserved=1234, prices="p;1;2")
    status, headers, body = parse(authz_http.allow(grant.to_metadata()))
    assert status == 200 and body == b""
    metadata = {name: value for name, value in headers if name in authz_http.METADATA_HEADERS}
    assert Grant.from_metadata(metadata) == grant
    assert metadata["tenant_id"] == "t-1" and metadata["model"] == "chat-a"


def test_the_directory_answer_sets_the_verified_tenant_for_the_upstream() -> None:
    status, headers, _ = parse(authz_http.allow({"tenant_id": "t-1"}, headers={"x-lime-verified-tenant": "t-1"}))
    assert status == 200
    assert ("x-lime-verified-tenant", "t-1") in headers
    assert {name for name, _ in headers} <= {"content-length", *authz_http.METADATA_HEADERS,
                                              *authz_http.UPSTREAM_HEADERS}


def test_a_refusal_keeps_its_status_body_and_retry_advice() -> None:
    reply = render_error(RateLimited("Slow down.", retry_after=7, limit="requests"), Protocol.OPENAI, "r-1")
    status, headers, body = parse(authz_http.refuse(reply))
    assert status == 429 and body == reply.body
    assert ("retry-after", "7") in headers
    assert {name for name, _ in headers} <= {"content-length", *authz_http.CLIENT_HEADERS}


def test_a_store_outage_travels_under_its_carrier_status() -> None:
    reply = render_error(ServiceUnavailable("The gateway cannot reserve quota right now; nothing was charged."),
                         Protocol.ANTHROPIC, "r-1")
    status, _, body = parse(authz_http.refuse(reply))
    assert status == authz_http.CARRIED_STATUSES[503] and status < 500
    assert b"nothing was charged" in body


@given(st.integers(min_value=400, max_value=599), st.binary(max_size=64))
def test_no_refusal_reaches_envoy_as_a_5xx_or_a_success(status: int, body: bytes) -> None:
    answered, _, echoed = parse(authz_http.refuse(ErrorReply(status, body)))
    assert 400 <= answered < 500 and echoed == body
    assert answered == status or answered in authz_http.CARRIED_STATUSES.values()


def test_anthropic_billing_refusal_keeps_its_402() -> None:
    reply = render_error(QuotaExceeded("Add points."), Protocol.ANTHROPIC, "r-1")
    assert parse(authz_http.refuse(reply))[0] == 402


def test_a_catalog_id_outside_ascii_reaches_envoy_as_utf8() -> None:
    _, headers, _ = parse(authz_http.allow({"tenant_id": "t-ü", "model": "模型"}))
    raw = authz_http.allow({"tenant_id": "t-ü", "model": "模型"})
    assert "模型".encode() in raw and "t-ü".encode() in raw
    assert len(headers) == 3


@pytest.mark.parametrize("value", ["t-1\r\ngrant: forged", "t-1\nx", "t-1\rx", "t\x00"])
def test_a_value_that_would_end_its_header_line_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="control character"):
        authz_http.allow({"tenant_id": value})
