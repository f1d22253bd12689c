"""The real stack for end-to-end tests: Envoy, authz, extproc, catalog_api and the mock upstream as separate
processes (the same :class:`lime.devstack.stack.Stack` that ``lime up`` runs), on free loopback ports, over the suite's
own PostgreSQL and Redis. Only the LLM provider is mocked."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anthropic
import openai
import psycopg
import pytest
import redis.asyncio as aioredis

from lime import admin
from lime.catalog import Limits
from lime.devstack.embedded import EmbeddedPostgres, EmbeddedRedis, free_port
from lime.devstack.stack import Stack
from lime.money import balances
from lime.settings import ADDRESS_NAMES, Settings
from lime.store.migrate import apply_migrations

T = TypeVar("T")

UPSTREAM_SECRET = "upstream-secret-mock-0001"
UPSTREAM_SECRET_ANTHROPIC = "upstream-secret-anthropic-0002"
#: The failover group's: the primary's is extproc's (the catalog upstream's), the backup's Envoy's own.
UPSTREAM_SECRET_FAILOVER = "upstream-secret-failover-0003"
UPSTREAM_SECRET_BACKUP = "upstream-secret-backup-0004"
ADMIN_TOKEN = "test-admin-token"
#: What Envoy presents to catalog_api (x-lime-catalog-secret); a `%` checks that the rendering escapes it.
CATALOG_SECRET = "test-catalog-secret-%-0005"
RESERVATION_TTL_SECONDS = 3

# public id, upstream, upstream model id, kind
CATALOG = (
    ("chat-a", "mock", "gpt-4o-mini", "chat"),
    ("chat-b", "mock", "gpt-4.1", "chat"),
    ("claude", "mock_anthropic", "claude-sonnet-4-5", "chat"),
    ("embed", "mock", "text-embedding-3-small", "embedding"),
    # A failover group (envoy/clusters.yaml): two candidates; the backup knows the model as gpt-4o-backup.
    ("chat-failover", "mock_failover", "gpt-4o", "chat"),
    # Models with full price sheets (SHEETS), for tests/e2e/test_price_sheet.py.
    ("claude-priced", "mock_anthropic", "claude-sonnet-4-5", "chat"),
    ("claude-long", "mock_anthropic", "claude-sonnet-4-5", "chat"),
    ("gpt-priced", "mock", "gpt-5", "chat"),
    ("chat-images", "mock", "gpt-4o-mini", "chat"),
)
#: The price sheets' parts beyond the three base prices every model has (1, 2 and 0.5 points per million tokens).
SHEETS: dict[str, dict[str, Any]] = {
    "claude-priced": {"cache_write_5m": 1_250_000, "cache_write_1h": 2_000_000, "tool_calls": {"web_search": 10_000}},
    # A long-context line low enough for a test's prompt to cross it.
    "claude-long": {"cache_write_5m": 1_250_000, "cache_write_1h": 2_000_000, "long_context": {
        "above": 2_000, "input": 2_000_000, "output": 3_000_000, "cached_input": 1_000_000,
        "cache_write_5m": 2_500_000, "cache_write_1h": 4_000_000}},
    "gpt-priced": {"audio_input": 8_000_000, "audio_output": 16_000_000, "tool_calls": {"web_search": 10_000},
                   "tiers": {"priority": {"input": 2_000_000, "output": 4_000_000, "cached_input": 1_000_000}}},
    # gpt-4o-mini multiplies its image tokens ~33x: an image may cost ~48,000 tokens at its price.
    "chat-images": {"image_tokens": 48_000},
}


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync or async test code alike (in its own loop and thread)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


@dataclass(frozen=True)
class TenantAccess:
    tenant_id: str
    key: str
    key_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"X-Lime-Tenant-ID": self.tenant_id}


@dataclass
class Gateway:
    settings: Settings
    env: dict[str, str]
    stack: Stack
    database_url: str
    redis_url: str

    @property
    def base_url(self) -> str:
        return f"http://{self.settings.public}/v1"

    @property
    def origin(self) -> str:
        return f"http://{self.settings.public}"

    @property
    def mock_url(self) -> str:
        return f"http://{self.settings.mock_upstream}"

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        return await psycopg.AsyncConnection.connect(self.database_url, autocommit=True)

    def new_tenant(self, models: list[str], *, brand_models: list[str] | None = None,
                   wait: bool = True, points: int = 10**12, limits: Limits | None = None) -> TenantAccess:
        suffix = uuid.uuid4().hex[:10]
        tenant_id, package_id = f"t-{suffix}", f"p-{suffix}"

        async def go() -> TenantAccess:
            async with await self._connect() as conn:
                await admin.create_package(conn, package_id, package_id, models, limits)
                brand_id = None
                if brand_models is not None:
                    brand_id = f"b-{suffix}"
                    await admin.create_brand(conn, brand_id, brand_id, brand_models)
                await admin.create_tenant(conn, tenant_id, tenant_id, package_id=package_id, brand_id=brand_id)
                key = await admin.create_key(conn, tenant_id)
                if points:
                    redis = aioredis.Redis.from_url(self.redis_url)
                    await balances.grant_points(conn, redis, tenant_id, points, "test")
                    await redis.aclose()
                return TenantAccess(tenant_id, key.secret, key.id)

        access = run_sync(go())
        if wait:
            self.wait_until_served(access)
        return access

    def wait_until_served(self, access: TenantAccess, timeout: float = 10.0) -> None:
        """Catalog changes reach the services by NOTIFY; wait until this tenant is served."""
        deadline = time.monotonic() + timeout
        while True:
            status, _ = self.http("GET", "/v1/models", headers={
                "authorization": f"Bearer {access.key}", "x-lime-tenant-id": access.tenant_id})
            if status == 200:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"tenant {access.tenant_id} not served after {timeout}s (last {status})")
            time.sleep(0.05)

    def openai(self, access: TenantAccess, *, key: str | None = None,
               headers: dict[str, str] | None = None) -> openai.OpenAI:
        """The official SDK as a tenant configures it; no retries, so a test sees each answer."""
        return openai.OpenAI(base_url=self.base_url, api_key=key or access.key, max_retries=0,
                             default_headers={**access.headers, **(headers or {})})

    def anthropic(self, access: TenantAccess, *, key: str | None = None) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.origin, api_key=key or access.key, default_headers=access.headers,
                                   max_retries=0)

    @contextlib.contextmanager
    def stopped(self, service: str) -> Iterator[None]:
        """One process of the stack stopped for the block, and started again after it."""
        self.stack.stop_service(service)
        try:
            yield
        finally:
            self.stack.start_service(service)

    def revoke(self, key_id: str) -> None:
        async def go() -> None:
            redis = aioredis.Redis.from_url(self.redis_url)
            async with await self._connect() as conn:
                await admin.revoke_key(conn, redis, key_id)
            await redis.aclose()

        run_sync(go())

    def suspend(self, tenant_id: str) -> None:
        """Suspend a tenant as an operator would (there is no command for it yet: one UPDATE, which the catalog
        trigger announces to every service)."""
        async def go() -> None:
            async with await self._connect() as conn:
                await conn.execute("UPDATE tenants SET status = 'suspended' WHERE id = %s", (tenant_id,))

        run_sync(go())

    def http(self, method: str, path: str, *, body: bytes | None = None, headers: dict[str, str] | None = None,
             origin: str | None = None) -> tuple[int, Any]:
        """A raw request; returns the status and the parsed JSON body (or the text)."""
        request = urllib.request.Request((origin or self.origin) + path, data=body, method=method,
                                         headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, raw, response_headers = response.status, response.read(), response.headers
        except urllib.error.HTTPError as error:
            status, raw, response_headers = error.code, error.read(), error.headers
        self.last_headers = response_headers
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")

    def mock_requests(self, request_id: str | None = None, *, after: int | None = None) -> list[dict[str, Any]]:
        """What reached the mock upstream, oldest first: everything, the requests with ``request_id``, or those
        after the first ``after`` (a :meth:`mock_request_count` taken before). (The log holds the whole session's
        requests, megabyte bodies among them: ask for what a test needs.)"""
        wanted = {"request_id": request_id} if request_id is not None else {}
        wanted |= {"after": str(after)} if after is not None else {}
        query = "?" + urllib.parse.urlencode(wanted) if wanted else ""
        return list(self.http("GET", f"/_mock/requests{query}", origin=self.mock_url)[1])

    def mock_request_count(self) -> int:
        """How many requests have reached the mock upstream."""
        return int(self.http("GET", "/_mock/requests/count", origin=self.mock_url)[1]["count"])

    def mock_request(self, request_id: str) -> dict[str, Any]:
        matches = self.mock_requests(request_id)
        assert len(matches) == 1, f"the mock saw {len(matches)} requests with id {request_id}"
        return matches[0]

    def async_openai(self, access: TenantAccess, *, headers: dict[str, str] | None = None) -> AsyncOpenAIClient:
        """The async SDK, configured like :meth:`openai`."""
        return openai.AsyncOpenAI(base_url=self.base_url, api_key=access.key, max_retries=0,
                                  default_headers={**access.headers, **(headers or {})})

    def anthropic_x_api_key(self, access: TenantAccess) -> XApiKeyAnthropic:
        """The anthropic SDK sending the key as ``x-api-key`` (and no ``Authorization``), as older SDKs do."""
        return XApiKeyAnthropic(base_url=self.origin, api_key=access.key, default_headers=access.headers,
                                max_retries=0)

    def async_anthropic(self, access: TenantAccess, *, x_api_key: bool = False) -> AsyncAnthropicClient:
        """The async anthropic SDK; ``Authorization: Bearer`` unless ``x_api_key``."""
        kind = AsyncXApiKeyAnthropic if x_api_key else anthropic.AsyncAnthropic
        return kind(base_url=self.origin, api_key=access.key, default_headers=access.headers, max_retries=0)


# Inside Gateway the methods `openai` and `anthropic` shadow the modules in annotations.
AsyncOpenAIClient = openai.AsyncOpenAI
AsyncAnthropicClient = anthropic.AsyncAnthropic


class XApiKeyAnthropic(anthropic.Anthropic):
    """The installed SDK sends ``api_key`` as a Bearer token; this one sends it as ``x-api-key`` instead."""

    @property
    def auth_headers(self) -> dict[str, str]:
        return {"X-Api-Key": self.api_key or ""}


class AsyncXApiKeyAnthropic(anthropic.AsyncAnthropic):
    @property
    def auth_headers(self) -> dict[str, str]:
        return {"X-Api-Key": self.api_key or ""}


async def _seed(database_url: str) -> None:
    await apply_migrations(database_url)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await admin.add_upstream(conn, "mock", "openai")
        await admin.add_upstream(conn, "mock_anthropic", "anthropic")
        await admin.add_upstream(conn, "mock_failover", "openai")
        for model_id, upstream, upstream_model, kind in CATALOG:
            await admin.add_model(conn, model_id, upstream_id=upstream, upstream_model=upstream_model, kind=kind,
                                  input_price=1_000_000, output_price=2_000_000, cached_input_price=500_000,
                                  price_sheet=SHEETS.get(model_id))


@pytest.fixture(scope="session")
def gateway(postgres: EmbeddedPostgres, redis_server: EmbeddedRedis,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    run_sync(_seed(postgres.url))
    env = {name: value for name, value in os.environ.items() if not name.startswith("LIME_")}
    env.update({
        "LIME_DATABASE_URL": postgres.url,
        "LIME_REDIS_URL": redis_server.url,
        "LIME_ADMIN_TOKEN": ADMIN_TOKEN,
        "LIME_CATALOG_SECRET": CATALOG_SECRET,
        "LIME_UPSTREAM_KEY_MOCK": UPSTREAM_SECRET,
        "LIME_UPSTREAM_KEY_MOCK_ANTHROPIC": UPSTREAM_SECRET_ANTHROPIC,
        "LIME_UPSTREAM_KEY_MOCK_FAILOVER": UPSTREAM_SECRET_FAILOVER,
        "LIME_UPSTREAM_KEY_MOCK_BACKUP": UPSTREAM_SECRET_BACKUP,
        "LIME_ENVOY_CONFIG": str(Path(__file__).resolve().parents[2] / "envoy" / "envoy.yaml"),
        "LIME_CATALOG_POLL_SECONDS": "1",
        # Short, so the whole suite runs with extproc vouching for its requests, and a lost one is reaped soon.
        "LIME_RESERVATION_TTL_SECONDS": str(RESERVATION_TTL_SECONDS),
    })
    with started_gateway(env, tmp_path_factory, postgres.url, redis_server.url) as gateway:
        yield gateway


@contextlib.contextmanager
def started_gateway(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory, database_url: str,
                    redis_url: str) -> Iterator[Gateway]:
    """A gateway of its own for ``env`` (the stores' URLs and settings in it), on free ports."""
    env = dict(env)
    for name in ADDRESS_NAMES:
        env[f"LIME_{name}_ADDR"] = f"127.0.0.1:{free_port()}"
    # Envoy reaches authz and extproc over Unix sockets, as in a Kubernetes gateway pod (`lime up` and the
    # lime_up test use TCP).
    sockets = tmp_path_factory.mktemp("sockets")
    env["LIME_AUTHZ_ADDR"] = f"unix:{sockets / 'authz.sock'}"
    env["LIME_EXTPROC_ADDR"] = f"unix:{sockets / 'extproc.sock'}"
    settings = Settings.from_env(env)
    # Tests read Envoy's access log right after their requests: written out every 100 ms, not Envoy's 10 s.
    stack = Stack(settings, env, tmp_path_factory.mktemp("stack"), envoy_log_flush_ms=100)
    stack.start()
    try:
        yield Gateway(settings, env, stack, database_url, redis_url)
    finally:
        stack.stop()
