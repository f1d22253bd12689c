"""Hostile credentials through the real stack, in both protocols: no key, a malformed one, an unknown one, an
expired or revoked one, a tenant header that is not the key's; each a 401/403 the SDKs raise, never forwarded.
And keys exist only as their SHA-256 in PostgreSQL and Redis (test_access_errors has another tenant's key and a
revoked key over OpenAI; test_key_lookup why a lookup leaks no timing)."""

from __future__ import annotations

import hashlib
import http.client
import json
import time
import urllib.error
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
import redis
from psycopg import sql

from lime import admin
from lime.directory import KEY_MEMORY_SECONDS, key_cache_name
from tests.e2e.conftest import Gateway, TenantAccess, run_sync

OPENAI_BODY = b'{"model": "chat-a", "messages": [{"role": "user", "content": "hi"}]}'
ANTHROPIC_BODY = b'{"model": "claude", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}'


@pytest.fixture(scope="module")
def tenant(gateway: Gateway) -> TenantAccess:
    return gateway.new_tenant(["chat-a", "claude"])


@pytest.fixture(scope="module")
def other(gateway: Gateway) -> TenantAccess:
    return gateway.new_tenant(["chat-a", "claude"])


def call(gateway: Gateway, protocol: str, credentials: dict[str, str]) -> tuple[int, Any, str]:
    """One chat request with exactly these credential headers; the status, body and request id."""
    if protocol == "openai":
        path, body, extra = "/v1/chat/completions", OPENAI_BODY, {}
    else:
        path, body, extra = "/v1/messages", ANTHROPIC_BODY, {"anthropic-version": "2023-06-01"}
    status, payload = gateway.http("POST", path, body=body, headers={
        "content-type": "application/json", **extra, **credentials})
    return status, payload, gateway.last_headers["x-request-id"]


def assert_refused(gateway: Gateway, protocol: str, credentials: dict[str, str], status: int,
                   openai_code: str) -> Any:
    before = gateway.mock_request_count()
    got, payload, request_id = call(gateway, protocol, credentials)
    assert got == status, (got, payload)
    if protocol == "openai":
        assert payload["error"]["code"] == openai_code, payload
    else:
        expected = {401: "authentication_error", 403: "permission_error"}[status]
        assert payload["type"] == "error" and payload["error"]["type"] == expected, payload
        assert payload["request_id"] == request_id
    assert gateway.mock_request_count() == before
    return payload


def as_header(protocol: str, key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"} if protocol == "openai" else {"x-api-key": key}


PROTOCOLS = ["openai", "anthropic"]


def cached(gateway: Gateway, secret: str) -> bytes | None:
    client = redis.Redis.from_url(gateway.redis_url)
    try:
        value = client.get(key_cache_name(hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()))
        return value if isinstance(value, bytes) else None
    finally:
        client.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("credentials", [{}, {"authorization": "Bearer "}, {"authorization": "Basic abc"},
                                         {"x-api-key": ""}, {"authorization": "Bearer", "x-api-key": " "}],
                         ids=["none", "empty_bearer", "basic", "empty_x_api_key", "blank_both"])
def test_a_missing_key_is_401(gateway: Gateway, tenant: TenantAccess, protocol: str,
                              credentials: dict[str, str]) -> None:
    assert_refused(gateway, protocol, {**credentials, "x-lime-tenant-id": tenant.tenant_id}, 401, "missing_api_key")


MALFORMED = {
    "too_short": "lime-sk-short",
    "bad_character": "lime-sk-" + "a" * 42 + "!",
    "one_character_too_many": None,  # the tenant's own key plus one character
    "another_prefix": "sk-proj-" + "a" * 43,
    "no_prefix": "a" * 51,
    "non_ascii": "lime-sk-" + "é" * 43,
    "8_kib": "lime-sk-" + "a" * 8192,
    "sql": "lime-sk-' OR '1'='1",
    "redis_glob": "lime-sk-*",
}


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("malformed", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_key_is_401_without_a_lookup(gateway: Gateway, tenant: TenantAccess, protocol: str,
                                                 malformed: str | None) -> None:
    key = malformed if malformed is not None else tenant.key + "a"
    assert_refused(gateway, protocol, {**as_header(protocol, key), "x-lime-tenant-id": tenant.tenant_id}, 401,
                   "invalid_api_key")
    assert cached(gateway, key) is None  # never looked up, so never cached


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_key_header_too_large_is_refused_by_envoy_not_a_5xx(gateway: Gateway, tenant: TenantAccess,
                                                              protocol: str) -> None:
    """A 100 KB key is over Envoy's header limit (60 KiB): a 431, or the connection closed, and nothing sent on."""
    before = gateway.mock_request_count()
    try:
        status: int | None = call(gateway, protocol, {**as_header(protocol, "lime-sk-" + "a" * 100_000),
                                                      "x-lime-tenant-id": tenant.tenant_id})[0]
    except (ConnectionError, http.client.HTTPException, urllib.error.URLError):
        status = None
    assert status in (None, 431)
    assert gateway.mock_request_count() == before


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_unknown_key_is_401_and_looked_up_by_its_hash(gateway: Gateway, tenant: TenantAccess,
                                                         protocol: str) -> None:
    unknown = "lime-sk-" + hashlib.sha256(protocol.encode()).hexdigest()[:43]
    assert_refused(gateway, protocol, {**as_header(protocol, unknown), "x-lime-tenant-id": tenant.tenant_id}, 401,
                   "invalid_api_key")
    assert cached(gateway, unknown) == b"-"  # remembered as unknown: a flood of it stays in Redis


def key_expiring(gateway: Gateway, tenant: TenantAccess, expires_at: datetime) -> str:
    async def go() -> str:
        async with await psycopg.AsyncConnection.connect(gateway.database_url, autocommit=True) as conn:
            return (await admin.create_key(conn, tenant.tenant_id, expires_at=expires_at)).secret

    return run_sync(go())


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_expired_key_is_401_and_one_not_yet_expired_works(gateway: Gateway, tenant: TenantAccess,
                                                             protocol: str) -> None:
    expired = key_expiring(gateway, tenant, datetime.now(UTC) - timedelta(seconds=1))
    payload = assert_refused(gateway, protocol, {**as_header(protocol, expired),
                                                 "x-lime-tenant-id": tenant.tenant_id}, 401, "expired_api_key")
    assert "expired" in json.dumps(payload)
    valid = key_expiring(gateway, tenant, datetime.now(UTC) + timedelta(days=1))
    status, _, _ = call(gateway, protocol, {**as_header(protocol, valid), "x-lime-tenant-id": tenant.tenant_id})
    assert status == 200


def test_a_revoked_key_is_401_in_the_anthropic_protocol(gateway: Gateway) -> None:
    access = gateway.new_tenant(["claude"])
    credentials = {"x-api-key": access.key, "x-lime-tenant-id": access.tenant_id}
    assert call(gateway, "anthropic", credentials)[0] == 200
    gateway.revoke(access.key_id)
    time.sleep(KEY_MEMORY_SECONDS)  # the longest authz trusts a key it looked up before the revocation
    assert_refused(gateway, "anthropic", credentials, 401, "revoked_api_key")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_tenant_header_that_is_not_the_keys_is_403_and_says_nothing_of_that_tenant(
        gateway: Gateway, tenant: TenantAccess, other: TenantAccess, protocol: str) -> None:
    """Naming another tenant, an unknown one, or the right one in other case or with junk: the same 403, so a
    key cannot be used to probe which tenants exist."""
    messages = set()
    for header in (other.tenant_id, "t-does-not-exist", tenant.tenant_id.upper(), tenant.tenant_id + ",x",
                   f"{tenant.tenant_id}\t{other.tenant_id}"):
        payload = assert_refused(gateway, protocol, {**as_header(protocol, tenant.key), "x-lime-tenant-id": header},
                                 403, "tenant_mismatch")
        messages.add(payload["error"]["message"])
    assert len(messages) == 1


@pytest.mark.parametrize("order", ["own_first", "other_first"])
def test_two_tenant_headers_serve_neither(gateway: Gateway, tenant: TenantAccess, other: TenantAccess,
                                          order: str) -> None:
    """Repeated, the header is folded into one list value (`a,b`), which is nobody's tenant."""
    values = [tenant.tenant_id, other.tenant_id] if order == "own_first" else [other.tenant_id, tenant.tenant_id]
    before = gateway.mock_request_count()
    connection = http.client.HTTPConnection(gateway.settings.public.host, gateway.settings.public.port, timeout=10)
    try:
        connection.putrequest("POST", "/v1/chat/completions")
        connection.putheader("authorization", f"Bearer {tenant.key}")
        connection.putheader("content-type", "application/json")
        connection.putheader("content-length", str(len(OPENAI_BODY)))
        for value in values:
            connection.putheader("x-lime-tenant-id", value)
        connection.endheaders(OPENAI_BODY)
        response = connection.getresponse()
        status, payload = response.status, json.loads(response.read())
    finally:
        connection.close()
    assert status == 403 and payload["error"]["code"] == "tenant_mismatch"
    assert gateway.mock_request_count() == before


def test_keys_exist_only_as_their_sha256_in_postgresql_and_redis(gateway: Gateway, tenant: TenantAccess) -> None:
    """After the keys above were used, refused and cached: no table row and no Redis key or value anywhere holds
    a key's text; the key is found under its SHA-256 alone."""
    used = gateway.new_tenant(["chat-a"])
    assert call(gateway, "openai", {**as_header("openai", used.key), "x-lime-tenant-id": used.tenant_id})[0] == 200
    secrets = [tenant.key, used.key]
    with psycopg.connect(gateway.database_url, autocommit=True) as conn:
        tables = [row[0] for row in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")]
        assert "api_keys" in tables
        for table in tables:
            for secret in secrets:
                query = sql.SQL("SELECT count(*) FROM {} t WHERE strpos(row_to_json(t)::text, %s) > 0").format(
                    sql.Identifier(table))
                assert conn.execute(query, (secret,)).fetchone() == (0,), f"a key's text is in {table}"
        hashes = {row[0] for row in conn.execute("SELECT key_hash FROM api_keys WHERE tenant_id = %s",
                                                 (used.tenant_id,))}
        assert hashes == {hashlib.sha256(used.key.encode()).hexdigest()}
    client = redis.Redis.from_url(gateway.redis_url)
    try:
        everything = [dump_redis_key(client, name) for name in client.scan_iter(count=1000)]
    finally:
        client.close()
    assert len(everything) > 10
    for secret in secrets:
        assert not [blob[:200] for blob in everything if secret.encode() in blob]
    assert cached(gateway, used.key) is not None


def dump_redis_key(client: redis.Redis, name: bytes) -> bytes:
    """A Redis key's name and whole value, as bytes, whatever its type."""
    kind = client.type(name)
    value: Any
    if kind == b"string":
        value = client.get(name)
    elif kind == b"hash":
        value = client.hgetall(name)
    elif kind == b"zset":
        value = client.zrange(name, 0, -1, withscores=True)
    elif kind == b"set":
        value = client.smembers(name)
    elif kind == b"list":
        value = client.lrange(name, 0, -1)
    elif kind == b"stream":
        value = client.xrange(name)
    else:
        value = kind
    return name + b"\n" + repr(value).encode()
