"""The embedded PostgreSQL/Redis servers: start, use, stop/kill, restart with data kept."""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
import pytest
import redis

from lime.devstack.embedded import EmbeddedPostgres, EmbeddedRedis, free_port, port_open

pytestmark = [
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed"),
]


def test_postgres_persists_across_stop_and_kill(tmp_path: Path) -> None:
    # tmp_path lives under the 0700 /tmp/pytest-of-<user>: this also checks the traversal fix-up.
    pg = EmbeddedPostgres(tmp_path / "pg", free_port(), durable=False)
    with pg:
        assert pg.is_running()
        assert pg.url == f"postgresql://postgres@127.0.0.1:{pg.port}/lime"
        with psycopg.connect(pg.url, autocommit=True) as conn:
            conn.execute("CREATE TABLE t (v text)")
            conn.execute("INSERT INTO t VALUES ('kept')")

        pg.stop()
        assert not pg.is_running()
        assert not port_open(pg.host, pg.port)

        pg.start()
        with psycopg.connect(pg.url, autocommit=True) as conn:
            assert conn.execute("SELECT v FROM t").fetchall() == [("kept",)]
            conn.execute("INSERT INTO t VALUES ('after-crash')")

        # A crash: committed rows survive via WAL recovery on the next start.
        pg.kill()
        assert not pg.is_running()
        pg.start()
        with psycopg.connect(pg.url) as conn:
            assert conn.execute("SELECT v FROM t ORDER BY v").fetchall() == [("after-crash",), ("kept",)]
    assert not pg.is_running()


def test_redis_on_a_unix_socket_answers_there_and_on_tcp(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "redis", free_port(), appendonly=False, unix_socket=tmp_path / "r.sock") as rd:
        assert rd.url == f"unix://{tmp_path / 'r.sock'}?db=0"
        for url in (rd.url, rd.tcp_url):
            client = redis.Redis.from_url(url)
            try:
                client.incr("both")
            finally:
                client.close()
        assert port_open(rd.host, 0, path=str(tmp_path / "r.sock"))
    assert not port_open(rd.host, rd.port)


def test_a_unix_socket_path_too_long_for_linux_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at most 107 bytes"):
        EmbeddedRedis(tmp_path / "redis", free_port(), unix_socket=Path("/" + "d" * 120) / "r.sock")


def test_redis_kill_and_restart(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "redis", free_port()) as rd:
        assert rd.url == f"redis://127.0.0.1:{rd.port}/0"
        client = redis.Redis.from_url(rd.url)
        try:
            client.set("k", "v")
            assert client.get("k") == b"v"
        finally:
            client.close()

        rd.kill()
        assert not rd.is_running()
        assert not port_open(rd.host, rd.port)

        rd.start()
        assert rd.is_running()
        client = redis.Redis.from_url(rd.url)
        try:
            assert client.ping()
            # appendonly=yes (default fsync everysec): a SIGKILL may lose the last second,
            # so only assert the data after a clean stop below.
            client.set("k2", "v2")
        finally:
            client.close()

        rd.stop()
        rd.start()
        client = redis.Redis.from_url(rd.url)
        try:
            assert client.get("k2") == b"v2"
        finally:
            client.close()
    assert not rd.is_running()


def test_start_refuses_a_busy_port(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "a", free_port()) as rd:
        other = EmbeddedRedis(tmp_path / "b", rd.port)
        with pytest.raises(RuntimeError, match="already in use"):
            other.start()
        assert not other.is_running()
