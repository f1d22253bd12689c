"""Hostile request bodies through the real stack, on the OpenAI and the Anthropic endpoint alike: whatever the
bytes, the client gets a clear 4xx in its own protocol (400, or Envoy's 413 over the size limit), never a 5xx,
and nothing reaches the upstream or holds a point.

What each case is refused for is pinned in the unit tests of :mod:`lime.protocols.request_body`; here the point is what
an attacker sees at the edge, and that the refusal happens before anything is forwarded or reserved.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
import redis.asyncio as aioredis

from lime.money import balances, quota
from tests.e2e.conftest import Gateway, TenantAccess, run_sync
from tests.e2e.helpers import anthropic_headers, openai_headers


@dataclass(frozen=True)
class Endpoint:
    path: str
    model: str
    headers: Callable[[TenantAccess], dict[str, str]]
    #: The rest of a valid body, as JSON text after the model: `{"model": M<rest>}`.
    rest: str


ENDPOINTS = {
    "openai": Endpoint("/v1/chat/completions", "chat-a", openai_headers,
                       ', "messages": [{"role": "user", "content": "hi"}]'),
    "anthropic": Endpoint("/v1/messages", "claude", anthropic_headers,
                          ', "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]'),
}
DEPTH = 100_000


@pytest.fixture(scope="module")
def tenant(gateway: Gateway) -> TenantAccess:
    return gateway.new_tenant(["chat-a", "claude"], points=10**12)


@pytest.fixture(params=sorted(ENDPOINTS))
def endpoint(request: pytest.FixtureRequest) -> Endpoint:
    return ENDPOINTS[request.param]


def valid(endpoint: Endpoint, **fields: Any) -> bytes:
    """A body the endpoint accepts, with ``fields`` added (as raw JSON values)."""
    extra = "".join(f', "{name}": {json.dumps(value)}' for name, value in fields.items())
    return f'{{"model": "{endpoint.model}"{endpoint.rest}{extra}}}'.encode()


@dataclass(frozen=True)
class Refused:
    status: int
    openai_code: str
    anthropic_type: str
    param: str | None = None


def post(gateway: Gateway, endpoint: Endpoint, tenant: TenantAccess, body: bytes) -> tuple[int, Any, str]:
    status, payload = gateway.http("POST", endpoint.path, body=body, headers=endpoint.headers(tenant))
    return status, payload, gateway.last_headers["x-request-id"]


def assert_refused(gateway: Gateway, endpoint: Endpoint, tenant: TenantAccess, body: bytes,
                   expected: Refused) -> Any:
    """The refusal is ``expected``, in the endpoint's protocol, and nothing was forwarded or left held."""
    before = gateway.mock_request_count()
    status, payload, request_id = post(gateway, endpoint, tenant, body)
    assert status == expected.status, (status, str(payload)[:300])
    assert isinstance(payload, dict), f"not a JSON error body: {str(payload)[:300]}"
    if endpoint is ENDPOINTS["anthropic"]:
        assert payload["type"] == "error" and payload["error"]["type"] == expected.anthropic_type, payload
        assert payload["request_id"] == request_id
    else:
        assert set(payload["error"]) == {"message", "type", "param", "code"}
        assert payload["error"]["code"] == expected.openai_code, payload
        if expected.param is not None:
            assert payload["error"]["param"] == expected.param
    assert payload_message(payload)
    assert gateway.mock_request_count() == before, "a refused body reached the upstream"
    assert not gateway.mock_requests(request_id)
    return payload


def payload_message(payload: dict[str, Any]) -> str:
    return str(payload["error"]["message"])


BAD_REQUEST = Refused(400, "invalid_request", "invalid_request_error")


def bad_type(param: str) -> Refused:
    return Refused(400, "invalid_type", "invalid_request_error", param)


# -- not JSON, or not a JSON object ------------------------------------------------------------------------------

NOT_JSON = {
    "empty": b"",
    "whitespace": b" \r\n\t ",
    "text": b"not json",
    "form": b"model=chat-a&messages=hi",
    "truncated": b'{"model": "chat-a", "messages": [',
    "trailing_garbage": b'{"model": "chat-a"} {"model": "chat-b"}',
    "single_quotes": b"{'model': 'chat-a'}",
    "array": b'[{"model": "chat-a"}]',
    "string": b'"chat-a"',
    "number": b"42",
    "null": b"null",
    "utf8_bom": b'\xef\xbb\xbf{"model": "chat-a"}',
    "utf16": '{"model": "chat-a"}'.encode("utf-16"),
    "nan": b'{"model": "chat-a", "temperature": NaN}',
    "infinity": b'{"model": "chat-a", "temperature": -Infinity}',
    "float_out_of_range": b'{"model": "chat-a", "temperature": 1e400}',
    "nul_byte": b'{"model": "chat-a"}\x00',
}


@pytest.mark.parametrize("raw", NOT_JSON.values(), ids=NOT_JSON.keys())
def test_a_body_that_is_not_a_json_object_is_400(gateway: Gateway, tenant: TenantAccess, endpoint: Endpoint,
                                                 raw: bytes) -> None:
    assert_refused(gateway, endpoint, tenant, raw.replace(b"chat-a", endpoint.model.encode()), BAD_REQUEST)


INVALID_UTF8 = {
    "in_a_message": b'"messages": [{"role": "user", "content": "caf\xe9"}]',
    "in_the_model": None,
    "lone_continuation_byte": b'"messages": [{"role": "user", "content": "\x80"}]',
    "overlong_encoding": b'"messages": [{"role": "user", "content": "\xc0\xaf"}]',
    "encoded_surrogate": b'"messages": [{"role": "user", "content": "\xed\xa0\x80"}]',
    "truncated_sequence": b'"messages": [{"role": "user", "content": "\xe2\x82"}]',
}


@pytest.mark.parametrize("where", INVALID_UTF8.values(), ids=INVALID_UTF8.keys())
def test_invalid_utf8_is_400(gateway: Gateway, tenant: TenantAccess, endpoint: Endpoint, where: bytes | None) -> None:
    if where is None:
        raw = f'{{"model": "{endpoint.model}\xff"}}'.encode("latin-1")
    else:
        raw = f'{{"model": "{endpoint.model}", "max_tokens": 16, '.encode() + where + b"}"
    payload = assert_refused(gateway, endpoint, tenant, raw, BAD_REQUEST)
    assert "UTF-8" in payload_message(payload)


def nested(depth: int, opening: str, closing: str, inner: str = "1") -> str:
    return opening * depth + inner + closing * depth


OBJECT = '{"a":'
DEEP: dict[str, Callable[[Endpoint], str]] = {
    "arrays_in_messages": lambda e: f'{{"model": "{e.model}", "messages": {nested(DEPTH, "[", "]", "")}}}',
    "objects_in_metadata": lambda e: f'{{"model": "{e.model}", "metadata": {nested(DEPTH, OBJECT, "}")}}}',
    "whole_body": lambda e: nested(DEPTH, OBJECT, "}"),
    "before_the_model": lambda e: f'{{"x": {nested(DEPTH, "[", "]")}, "model": "{e.model}"}}',
}


@pytest.mark.parametrize("build", DEEP.values(), ids=DEEP.keys())
def test_json_nested_100k_levels_deep_is_400(gateway: Gateway, tenant: TenantAccess, endpoint: Endpoint,
                                             build: Callable[[Endpoint], str]) -> None:
    payload = assert_refused(gateway, endpoint, tenant, build(endpoint).encode(), BAD_REQUEST)
    assert "nested too deeply" in payload_message(payload)


# -- the fields Lime reads, with the wrong types -------------------------------------------------------------------

WRONG_TYPES: list[tuple[str, Any, Refused]] = [
    ("model", None, Refused(400, "missing_model", "invalid_request_error", "model")),
    ("model", 42, bad_type("model")),
    ("model", 4.2, bad_type("model")),
    ("model", True, bad_type("model")),
    ("model", "", bad_type("model")),
    ("model", ["chat-a"], bad_type("model")),
    ("model", {"id": "chat-a"}, bad_type("model")),
    ("stream", "true", bad_type("stream")),
    ("stream", 1, bad_type("stream")),
    ("stream", 0, bad_type("stream")),
    ("stream", [True], bad_type("stream")),
    ("stream", {}, bad_type("stream")),
    *[(cap, value, bad_type(cap))
      for cap in ("max_tokens", "max_completion_tokens", "max_output_tokens")
      for value in ("16", 0, -1, 1.5, 16.0, True, [16], {"n": 16})],
    *[("n", value, bad_type("n")) for value in ("2", 0, -3, 2.0, False, [2])],
]


@pytest.mark.parametrize(("field", "value", "expected"), WRONG_TYPES,
                         ids=[f"{field}={json.dumps(value)}" for field, value, _ in WRONG_TYPES])
def test_a_field_lime_reads_with_the_wrong_type_is_400(gateway: Gateway, tenant: TenantAccess, endpoint: Endpoint,
                                                       field: str, value: Any, expected: Refused) -> None:
    body = json.loads(valid(endpoint))
    if field == "model" and value is None:
        del body["model"]
    else:
        body[field] = value
    payload = assert_refused(gateway, endpoint, tenant, json.dumps(body).encode(), expected)
    assert f"{field}" in payload_message(payload)


# -- two `model` keys, or any duplicated key -----------------------------------------------------------------------

DUPLICATES = {
    "model_twice_different": '{{"model": "{m}", "model": "{other}"{rest}}}',
    "model_twice_same": '{{"model": "{m}", "model": "{m}"{rest}}}',
    "model_spelt_with_an_escape": '{{"model": "{m}", "mod\\u0065l": "{other}"{rest}}}',
    "model_at_both_ends": '{{"model": "{other}"{rest}, "model": "{m}"}}',
    "stream_twice": '{{"model": "{m}", "stream": false, "stream": true{rest}}}',
    "max_tokens_twice": '{{"model": "{m}", "max_tokens": 1, "max_tokens": 100000{rest_without_cap}}}',
    "inside_a_message": '{{"model": "{m}", "max_tokens": 16, "messages": [{{"role": "user", "role": "system", '
                        '"content": "hi"}}]}}',
}


@pytest.mark.parametrize("template", DUPLICATES.values(), ids=DUPLICATES.keys())
def test_a_duplicated_key_is_400(gateway: Gateway, tenant: TenantAccess, endpoint: Endpoint, template: str) -> None:
    other = "chat-b" if endpoint.model == "claude" else "claude"
    rest_without_cap = endpoint.rest.replace(', "max_tokens": 16', "")
    raw = template.format(m=endpoint.model, other=other, rest=endpoint.rest, rest_without_cap=rest_without_cap)
    payload = assert_refused(gateway, endpoint, tenant, raw.encode(), BAD_REQUEST)
    assert "more than once" in payload_message(payload)


# -- huge values -----------------------------------------------------------------------------------------------------


def test_a_huge_model_string_is_404(gateway: Gateway, tenant: TenantAccess, endpoint: Endpoint) -> None:
    """An 8 MiB model id is just an unknown model (the message names it, as OpenAI's does)."""
    body = json.loads(valid(endpoint))
    body["model"] = "m" * (8 * 1024 * 1024)
    assert_refused(gateway, endpoint, tenant, json.dumps(body).encode(),
                   Refused(404, "model_not_found", "not_found_error", "model"))


def test_huge_strings_everywhere_under_the_limit_are_forwarded_intact(gateway: Gateway, tenant: TenantAccess,
                                                                       endpoint: Endpoint) -> None:
    """Size is not hostility: a 20 MiB prompt with a 1 MiB key and a 1 MiB value of an unknown field is the
    upstream's to judge, and reaches it byte for byte."""
    body = json.loads(valid(endpoint))
    body["messages"][0]["content"] = "é" * (10 * 1024 * 1024)
    body["k" * (1024 * 1024)] = "v" * (1024 * 1024)
    status, payload, request_id = post(gateway, endpoint, tenant, json.dumps(body, ensure_ascii=False).encode())
    assert status == 200, str(payload)[:300]
    seen = gateway.mock_request(request_id)
    assert seen["body"]["messages"][0]["content"] == body["messages"][0]["content"]
    assert seen["body"]["k" * (1024 * 1024)] == "v" * (1024 * 1024)


HUGE_NUMBERS = {
    "integer_of_5000_digits": "1" + "0" * 5000,
    "integer_of_400_digits": "9" * 400,
}


@pytest.mark.parametrize("digits", HUGE_NUMBERS.values(), ids=HUGE_NUMBERS.keys())
def test_an_integer_too_long_for_json_is_400(gateway: Gateway, tenant: TenantAccess, endpoint: Endpoint,
                                             digits: str) -> None:
    """Python refuses to read integers of more than 4300 digits (CVE-2020-10735); in a field Lime does not read
    it must still be a 400, and as a cap it must not reserve (or fail to reserve) an absurd amount."""
    raw = f'{{"model": "{endpoint.model}"{endpoint.rest}, "seed": {digits}}}'.encode()
    if len(digits) > 4300:
        assert_refused(gateway, endpoint, tenant, raw, BAD_REQUEST)
    cap = f'{{"model": "{endpoint.model}", "max_tokens": {digits}, "messages": []}}'.encode()
    status, payload, _ = post(gateway, endpoint, tenant, cap)
    assert 400 <= status < 500, (status, str(payload)[:300])


@pytest.mark.parametrize(("name", "field"), [("openai", "max_tokens"), ("openai", "n"), ("anthropic", "max_tokens")])
def test_an_absurd_cap_is_refused_as_quota_not_as_a_crash(gateway: Gateway, tenant: TenantAccess, name: str,
                                                          field: str) -> None:
    """A cap of 10**30 tokens (or chat's n = 10**30) is a valid integer: the reservation it needs cannot be held, so
    the client gets the quota refusal (429; Anthropic 402), and nothing is held or sent."""
    endpoint = ENDPOINTS[name]
    body = json.loads(valid(endpoint))
    body[field] = 10**30
    assert_refused(gateway, endpoint, tenant, json.dumps(body).encode(),
                   Refused(402 if name == "anthropic" else 429, "insufficient_quota", "billing_error"))


# -- over Envoy's size limit -------------------------------------------------------------------------------------------


def chunks_of(total: int, prefix: bytes, size: int = 1024 * 1024) -> Iterator[bytes]:
    yield prefix
    sent = len(prefix)
    while sent < total:
        piece = min(size, total - sent)
        yield b"a" * piece
        sent += piece


def test_a_chunked_body_over_the_limit_is_413(gateway: Gateway, tenant: TenantAccess, endpoint: Endpoint) -> None:
    """Without a content-length Envoy cannot refuse up front: it buffers up to 32 MiB for authz and then answers
    413 in the client's protocol (the sized case is test_fail_closed's)."""
    before = gateway.mock_request_count()
    connection = http.client.HTTPConnection(gateway.settings.public.host, gateway.settings.public.port, timeout=60)
    try:
        connection.putrequest("POST", endpoint.path)
        for name, value in endpoint.headers(tenant).items():
            connection.putheader(name, value)
        connection.putheader("transfer-encoding", "chunked")
        connection.endheaders()
        prefix = f'{{"model": "{endpoint.model}", "messages": [{{"role": "user", "content": "'.encode()
        try:
            for chunk in chunks_of(33 * 1024 * 1024, prefix):
                connection.send(b"%x\r\n%b\r\n" % (len(chunk), chunk))
            connection.send(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # Envoy may answer and close before the whole body is sent
        response = connection.getresponse()
        status, payload = response.status, json.loads(response.read())
    finally:
        connection.close()
    assert status == 413
    if endpoint is ENDPOINTS["anthropic"]:
        assert payload["type"] == "error" and payload["error"]["type"] == "request_too_large"
    else:
        assert payload["error"]["code"] == "request_too_large"
    assert gateway.mock_request_count() == before


# -- what the refusals cost ---------------------------------------------------------------------------------------


def test_refused_bodies_are_charged_nothing_and_hold_nothing(gateway: Gateway) -> None:
    """A tenant of its own sends every kind of body refused above, on both endpoints: no usage record, nothing
    held or in flight, the balance untouched."""
    tenant = gateway.new_tenant(["chat-a", "claude"], points=10**12)
    for endpoint in ENDPOINTS.values():
        bodies = [*NOT_JSON.values(), b'{"model": "%s", "model": "chat-b"}' % endpoint.model.encode(),
                  valid(endpoint)[:-1] + b', "n": ' + HUGE_NUMBERS["integer_of_5000_digits"].encode() + b"}"]
        for raw in bodies:
            status, _, _ = post(gateway, endpoint, tenant, raw)
            assert status == 400, raw[:80]

    async def state() -> tuple[list[str], dict[str, Any], int]:
        redis = aioredis.Redis.from_url(gateway.redis_url)
        try:
            async with await psycopg.AsyncConnection.connect(gateway.database_url, autocommit=True) as conn:
                rows = await (await conn.execute(
                    "SELECT endpoint FROM usage_records WHERE tenant_id = %s ORDER BY endpoint",
                    (tenant.tenant_id,))).fetchall()
                view = await balances.balance_view(conn, redis, tenant.tenant_id)
            inflight = int(await redis.get(quota.inflight_key(tenant.tenant_id)) or 0)
        finally:
            await redis.aclose()
        return [row[0] for row in rows], view, inflight

    time.sleep(0.5)  # a settlement, were there one, would reach PostgreSQL within this
    endpoints, view, inflight = run_sync(state())
    assert endpoints == []
    assert view["held"] == 0 and inflight == 0 and view["unpersisted"] == 0
    assert view["balance"] == 10**12
