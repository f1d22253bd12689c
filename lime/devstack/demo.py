"""The demo catalog ``lime up`` seeds when it is absent: one tenant, one package, three models, all on the mock.

The demo key is kept in ``<state dir>/demo.json`` (mode 0600) so ``lime up`` can print it again; that copy exists
only for the demo tenant, for convenience on a developer's machine. Real keys are stored hashed and shown once.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import redis.asyncio as aioredis

from lime import admin
from lime.money import balances

__all__ = ["DEMO_MODELS", "DEMO_TENANT", "DemoAccess", "seed_demo"]

DEMO_TENANT = "demo"
DEMO_PACKAGE = "demo"
#: What the demo tenant starts with: 100 points, some thousands of demo requests.
DEMO_POINTS = 100_000_000
# (public id, upstream, upstream model id, kind, input, output, cached input price per million tokens)
DEMO_MODELS = (
    ("lime-chat", "mock", "gpt-4o-mini", "chat", 150_000, 600_000, 75_000),
    ("lime-claude", "mock_anthropic", "claude-sonnet-4-5", "chat", 3_000_000, 15_000_000, 300_000),
    ("lime-embed", "mock", "text-embedding-3-small", "embedding", 20_000, 0, 0),
)


@dataclass(frozen=True)
class DemoAccess:
    tenant_id: str
    key: str

    def __repr__(self) -> str:
        return f"DemoAccess(tenant_id={self.tenant_id!r})"


async def _exists(conn: psycopg.AsyncConnection[Any], table: str, row_id: str) -> bool:
    query = {"upstreams": "SELECT 1 FROM upstreams WHERE id = %s", "models": "SELECT 1 FROM models WHERE id = %s",
             "packages": "SELECT 1 FROM packages WHERE id = %s", "tenants": "SELECT 1 FROM tenants WHERE id = %s"}
    cursor = await conn.execute(query[table], (row_id,))
    return await cursor.fetchone() is not None


async def seed_demo(conn: psycopg.AsyncConnection[Any], redis: aioredis.Redis, state_dir: Path) -> DemoAccess:
    for upstream, protocol in (("mock", "openai"), ("mock_anthropic", "anthropic")):
        if not await _exists(conn, "upstreams", upstream):
            await admin.add_upstream(conn, upstream, protocol, "the demo mock upstream")
    for model_id, upstream, upstream_model, kind, input_price, output_price, cached in DEMO_MODELS:
        if not await _exists(conn, "models", model_id):
            await admin.add_model(conn, model_id, upstream_id=upstream, upstream_model=upstream_model, kind=kind,
                                  input_price=input_price, output_price=output_price, cached_input_price=cached)
    if not await _exists(conn, "packages", DEMO_PACKAGE):
        await admin.create_package(conn, DEMO_PACKAGE, "Demo", [m[0] for m in DEMO_MODELS])
    if not await _exists(conn, "tenants", DEMO_TENANT):
        await admin.create_tenant(conn, DEMO_TENANT, "Demo tenant", package_id=DEMO_PACKAGE)
        await balances.grant_points(conn, redis, DEMO_TENANT, DEMO_POINTS, "demo")
    saved = state_dir / "demo.json"
    if saved.exists():
        data = json.loads(saved.read_text())
        cursor = await conn.execute("SELECT 1 FROM api_keys WHERE id = %s AND status = 'active'", (data["key_id"],))
        if await cursor.fetchone() is not None:
            return DemoAccess(DEMO_TENANT, data["key"])
    key = await admin.create_key(conn, DEMO_TENANT, name="demo")
    state_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, at start-up
    fd = os.open(saved, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"key_id": key.id, "key": key.secret}, handle)
    return DemoAccess(DEMO_TENANT, key.secret)
