"""`lime up` on a machine where nothing answers on the default ports starts private PostgreSQL and Redis."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from lime.cli import up_command
from lime.settings import Settings


def test_private_stores_start_in_the_state_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Pretend the default ports are free: this machine runs its own PostgreSQL and Redis there.
    monkeypatch.setattr(up_command, "port_open", lambda host, port: False)
    settings = Settings.from_env({"LIME_STATE_DIR": str(tmp_path / "state")})
    keep: list[Any] = []
    try:
        chosen = up_command._stores(settings, keep)
        assert len(keep) == 2
        assert (tmp_path / "state" / "postgres" / "PG_VERSION").exists()
        with psycopg.connect(chosen.require_database_url()) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("lime",)
        # Its own Redis over a Unix socket in its folder (cheaper per command than loopback TCP).
        assert chosen.require_redis_url() == f"unix://{tmp_path / 'state' / 'redis' / 'redis.sock'}?db=0"
        assert redis.Redis.from_url(chosen.require_redis_url()).ping()
    finally:
        for server in keep:
            server.stop()


def test_a_state_folder_too_deep_for_a_socket_keeps_redis_on_tcp(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 100)
    server = up_command._private_redis(Settings.from_env({"LIME_STATE_DIR": str(deep)}))
    assert server.unix_socket is None
    assert server.url.startswith("redis://127.0.0.1:")


def test_configured_stores_are_used_as_they_are(tmp_path: Path, postgres: Any, redis_server: Any) -> None:
    settings = Settings.from_env({"LIME_STATE_DIR": str(tmp_path), "LIME_DATABASE_URL": postgres.url,
                                  "LIME_REDIS_URL": redis_server.url})
    keep: list[Any] = []
    chosen = up_command._stores(settings, keep)
    assert keep == []
    assert (chosen.database_url, chosen.redis_url) == (postgres.url, redis_server.url)
