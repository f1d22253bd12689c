"""``lime up``: the whole gateway in the foreground on one machine, stopped cleanly with Ctrl-C.

Stores: LIME_DATABASE_URL / LIME_REDIS_URL when set; else whatever answers on the default ports; else private
PostgreSQL and Redis started from the machine's binaries in the state folder (``.lime`` by default).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
import redis.asyncio as aioredis

from lime.cli.stores import DEFAULT_DATABASE_URL, DEFAULT_REDIS_URL, record_stores
from lime.devstack.demo import DemoAccess, seed_demo
from lime.devstack.embedded import (
    UNIX_PATH_MAX,
    EmbeddedPostgres,
    EmbeddedRedis,
    ensure_database,
    free_port,
    port_open,
)
from lime.devstack.stack import Stack
from lime.settings import Settings, child_environment, upstream_env_name
from lime.store.migrate import apply_migrations

__all__ = ["register"]


def _stores(settings: Settings, keep: list[Any]) -> Settings:
    database_url = settings.database_url or _store(
        "PostgreSQL", 5432, DEFAULT_DATABASE_URL, lambda: EmbeddedPostgres(_private("postgres", settings), free_port()),
        keep)
    redis_url = settings.redis_url or _store("Redis", 6379, DEFAULT_REDIS_URL, lambda: _private_redis(settings), keep)
    ensure_database(database_url)
    return replace(settings, database_url=database_url, redis_url=redis_url)


def _private(name: str, settings: Settings) -> Path:
    return settings.state_dir.resolve() / name


def _private_redis(settings: Settings) -> EmbeddedRedis:
    """Reached over a Unix socket in its folder, which costs the services and Redis less CPU per command than
    loopback TCP (docs/performance.md, "Per-message costs"); over TCP alone if the folder is too deep for one."""
    data_dir = _private("redis", settings)
    socket: Path | None = data_dir / "redis.sock"
    if len(os.fsencode(str(socket))) > UNIX_PATH_MAX:
        socket = None
    return EmbeddedRedis(data_dir, free_port(), unix_socket=socket)


def _store(what: str, default_port: int, default_url: str, embedded: Callable[[], EmbeddedPostgres | EmbeddedRedis],
           keep: list[Any]) -> str:
    """The server on the default port if one answers, else a private one started from the machine's binaries."""
    if port_open("127.0.0.1", default_port):
        return default_url
    server = embedded()
    server.start()
    keep.append(server)
    print(f"started a private {what} in {server.data_dir}")
    return str(server.url)


def _secret(settings: Settings, name: str) -> str:
    """A generated secret kept in the state folder, so restarts reuse it."""
    path = settings.state_dir / name
    if not path.exists():
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(24))
    return path.read_text().strip()


async def _prepare(settings: Settings) -> DemoAccess:
    url = settings.require_database_url()
    await apply_migrations(url)
    redis = aioredis.Redis.from_url(settings.require_redis_url())
    try:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            return await seed_demo(conn, redis, settings.state_dir)
    finally:
        await redis.aclose()


def _up(args: argparse.Namespace, settings: Settings) -> int:
    # First of all, and explicitly for both signals: a SIGTERM or Ctrl-C while the stores or services start must
    # still stop what already runs, and a shell that started `lime up` with SIGINT ignored (a background job of a
    # non-interactive shell) would otherwise leave Python's SIGINT ignored too: no KeyboardInterrupt, ever.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    keep: list[Any] = []
    stack: Stack | None = None
    try:
        settings = _stores(settings, keep)
        record_stores(settings)
        access = asyncio.run(_prepare(settings))
        overrides = {"LIME_DATABASE_URL": settings.require_database_url(),
                     "LIME_REDIS_URL": settings.require_redis_url()}
        token_hint = "$LIME_ADMIN_TOKEN"  # noqa: S105 - the name of the variable, not a token
        if not settings.admin_token:
            overrides["LIME_ADMIN_TOKEN"] = _secret(settings, "admin_token")
            token_hint = f"$(cat {settings.state_dir / 'admin_token'})"
        if not settings.catalog_secret:
            # Envoy presents it to catalog_api, which believes the tenant header only beside it.
            overrides["LIME_CATALOG_SECRET"] = _secret(settings, "catalog_secret")
        for upstream in ("mock", "mock_anthropic"):
            # The mock accepts any credential; a real upstream's comes from the environment or LIME_SECRETS_DIR.
            if settings.upstream_credential(upstream) is None:
                overrides[upstream_env_name(upstream)] = "mock-secret-" + _secret(settings, "mock_upstream_key")
        if args.processes is not None:
            overrides["LIME_PROCESSES"] = str(args.processes)
        env = child_environment(overrides)
        stack = Stack(Settings.from_env(env), env, settings.state_dir / "logs")
        stack.start()
        _banner(settings, access, token_hint)
        exited = stack.wait()
        print(f"{exited} exited; stopping. Its log:\n{stack.log_tail(exited)}")
        return 1
    except KeyboardInterrupt:
        print("\nstopping Lime…", flush=True)
        return 0
    finally:
        # A second Ctrl-C while stopping must not leave half the processes running.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if stack is not None:
            stack.stop()
        for server in reversed(keep):
            server.stop()


def _interrupt(signum: int, frame: object) -> None:
    # SIGTERM stops the stack the same way Ctrl-C does, so the stores are shut down too.
    raise KeyboardInterrupt


def _banner(settings: Settings, access: DemoAccess, admin_token_hint: str) -> None:
    base = f"http://{settings.public}/v1"
    print(f"""
Lime is up.
  base URL     {base}
  tenant id    {access.tenant_id}
  API key      {access.key}
  models       lime-chat (OpenAI chat), lime-claude (Anthropic messages), lime-embed (embeddings)
  admin API    http://{settings.admin}  (Authorization: Bearer {admin_token_hint})
  logs         {Path(settings.state_dir) / 'logs'}

Try it:
  curl {base}/chat/completions \\
    -H 'Authorization: Bearer {access.key}' \\
    -H 'X-Lime-Tenant-ID: {access.tenant_id}' \\
    -H 'Content-Type: application/json' \\
    -d '{{"model": "lime-chat", "messages": [{{"role": "user", "content": "Hello!"}}]}}'

What it cost (the demo tenant starts with 100 points):
  .venv/bin/lime usage --tenant {access.tenant_id}
  .venv/bin/lime points balance {access.tenant_id}

Ctrl-C stops everything.""", flush=True)


def register(commands: Any) -> None:
    up = commands.add_parser("up", help="run the whole gateway in the foreground (Ctrl-C stops it)")
    up.add_argument("--processes", type=int, metavar="N",
                    help="processes of authz and of extproc each, one per core (default: LIME_PROCESSES, else 1)")
    up.set_defaults(run=_up)
