"""`lime up` as a new user runs it: it seeds a demo, prints a curl, and that curl returns a chat completion."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from lime.devstack.embedded import EmbeddedPostgres, EmbeddedRedis, free_port
from lime.settings import ADDRESS_NAMES
from tests.processes import stop_tree


@pytest.fixture
def fresh_database(postgres: EmbeddedPostgres) -> Iterator[str]:
    name = f"up_{os.getpid()}_{free_port()}"
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield postgres.url.rsplit("/", 1)[0] + "/" + name


def start_lime_up(database_url: str, redis_server: EmbeddedRedis, tmp_path: Path, *,
                  ignore_signals: bool = False) -> tuple[subprocess.Popen[bytes], dict[str, str], Path]:
    """`lime up` on free ports, as a child in a session of its own; returns once its banner is out.
    ``ignore_signals``: started as a non-interactive shell starts a background job, SIGINT and SIGTERM ignored."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIME_")}
    # A Redis database of its own: the session gateway's settler consumes the usage stream of database 0, and
    # would take this stack's events (two deployments must never share one).
    redis_url = f"redis://{redis_server.host}:{redis_server.port}/7"
    env.update({"LIME_DATABASE_URL": database_url, "LIME_REDIS_URL": redis_url,
                "LIME_STATE_DIR": str(tmp_path / "state"),
                "LIME_ENVOY_CONFIG": str(Path(__file__).resolve().parents[2] / "envoy" / "envoy.yaml")})
    for name in ADDRESS_NAMES:
        env[f"LIME_{name}_ADDR"] = f"127.0.0.1:{free_port()}"
    log = tmp_path / "up.log"

    def inherited_dispositions() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    with open(log, "wb") as out:
        up = subprocess.Popen([sys.executable, "-m", "lime.cli", "up"], env=env, stdout=out,
                              stderr=subprocess.STDOUT, start_new_session=True,
                              preexec_fn=inherited_dispositions if ignore_signals else None)
    try:
        deadline = time.monotonic() + 60
        while "Ctrl-C stops everything" not in log.read_text():
            assert up.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
    except BaseException:
        stop_tree(up, signal.SIGINT, 30)
        raise
    return up, env, log


def assert_all_stopped(env: dict[str, str]) -> None:
    for name in ("PUBLIC", "ENVOY_ADMIN", "AUTHZ", "EXTPROC", "CATALOG", "MOCK_UPSTREAM"):
        host, port = env[f"LIME_{name}_ADDR"].split(":")
        with pytest.raises(OSError):
            socket.create_connection((host, int(port)), timeout=1).close()


def test_lime_up_prints_a_curl_that_works(fresh_database: str, redis_server: EmbeddedRedis, tmp_path: Path) -> None:
    up, env, log = start_lime_up(fresh_database, redis_server, tmp_path)
    try:
        deadline = time.monotonic() + 60
        banner = log.read_text()
        curl = re.search(r"^\s*(curl .*?)\n\n", banner, re.S | re.M)
        assert curl, banner
        command = shlex.split(curl.group(1).replace("\\\n", " "))
        result = subprocess.run([*command, "-s", "-w", "\n%{http_code}"], capture_output=True, text=True,
                                timeout=30, check=False)
        body, status = result.stdout.rsplit("\n", 1)
        assert status == "200", body
        assert '"object":"chat.completion"' in body.replace(" ", "")
        # The banner's billing commands show what that request cost, once the settler has written it.
        usage = re.search(r"^\s*\S*(lime usage .*)$", banner, re.M)
        assert usage, banner
        while True:
            shown = subprocess.run([sys.executable, "-m", "lime.cli", *shlex.split(usage.group(1))[1:], "--json"],
                                   env=env, capture_output=True, text=True, timeout=30, check=True)
            rows = json.loads(shown.stdout)
            if rows:
                break
            assert time.monotonic() < deadline, shown
            time.sleep(0.2)
        assert rows[0]["model"] == "lime-chat" and rows[0]["requests"] == 1 and rows[0]["cost"] > 0
    finally:
        # A stop that does not come in time kills the whole stack (and fails below): nothing outlives the test.
        returncode = stop_tree(up, signal.SIGINT, 30)
    assert returncode == 0, log.read_text()
    assert "stopping Lime" in log.read_text()
    assert_all_stopped(env)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_lime_up_stops_on_a_signal_it_inherited_as_ignored(fresh_database: str, redis_server: EmbeddedRedis,
                                                            tmp_path: Path, sig: signal.Signals) -> None:
    """A shell that runs `lime up &` hands it SIGINT ignored: Python then never raises KeyboardInterrupt unless
    lime up installs its handlers itself. Ctrl-C and SIGTERM must stop it all the same, stack and stores."""
    up, env, log = start_lime_up(fresh_database, redis_server, tmp_path, ignore_signals=True)
    returncode = stop_tree(up, sig, 30)
    assert returncode == 0, log.read_text()
    assert "stopping Lime" in log.read_text()
    assert_all_stopped(env)
