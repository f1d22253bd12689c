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


@pytest.fixture
def fresh_database(postgres: EmbeddedPostgres) -> Iterator[str]:
    name = f"up_{os.getpid()}_{free_port()}"
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield postgres.url.rsplit("/", 1)[0] + "/" + name


def test_lime_up_prints_a_curl_that_works(fresh_database: str, redis_server: EmbeddedRedis, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIME_")}
    # A Redis database of its own: the session gateway's settler consumes the usage stream of database 0, and
    # would take this stack's events (two deployments must never share one).
    redis_url = f"redis://{redis_server.host}:{redis_server.port}/7"
    env.update({"LIME_DATABASE_URL": fresh_database, "LIME_REDIS_URL": redis_url,
                "LIME_STATE_DIR": str(tmp_path / "state"),
                "LIME_ENVOY_CONFIG": str(Path(__file__).resolve().parents[2] / "envoy" / "envoy.yaml")})
    for name in ADDRESS_NAMES:
        env[f"LIME_{name}_ADDR"] = f"127.0.0.1:{free_port()}"
    log = tmp_path / "up.log"
    with open(log, "wb") as out:
        up = subprocess.Popen([sys.executable, "-m", "lime.cli", "up"], env=env, stdout=out,
                              stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while "Ctrl-C stops everything" not in log.read_text():
            assert up.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
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
        up.send_signal(signal.SIGINT)
        up.wait(30)
    assert up.returncode == 0
    assert "stopping Lime" in log.read_text()
    for name in ("PUBLIC", "AUTHZ", "EXTPROC", "CATALOG", "MOCK_UPSTREAM"):
        host, port = env[f"LIME_{name}_ADDR"].split(":")
        with pytest.raises(OSError):
            socket.create_connection((host, int(port)), timeout=1).close()
