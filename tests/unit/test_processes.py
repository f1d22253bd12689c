"""The suite's process bookkeeping (tests/processes.py): a stop that times out kills the whole tree, and an orphan
of a killed parent is still found (pytest is a child subreaper)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from tests.processes import descendants, kill_tree, stop_tree

# A parent that ignores SIGTERM and SIGINT, with a child in a session of its own (as Stack starts its services).
STUBBORN = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
signal.signal(signal.SIGINT, signal.SIG_IGN)
subprocess.Popen(["sleep", "120"], start_new_session=True)
print("ready", flush=True)
time.sleep(120)
"""


def started(script: str) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, start_new_session=True)
    assert process.stdout is not None and process.stdout.readline() == b"ready\n"
    return process


def test_a_stop_that_times_out_kills_the_process_and_what_it_started() -> None:
    process = started(STUBBORN)
    # /proc/<pid>/cmdline can read empty for a moment around a new process's exec on a busy machine (seen once in a
    # full `make test`): read it again rather than fail on that moment.
    deadline = time.monotonic() + 5
    while not (children := descendants(process.pid)) or not children[0].command:
        assert time.monotonic() < deadline, children
        time.sleep(0.05)
    [child] = children
    assert "sleep" in child.command
    began = time.monotonic()
    assert stop_tree(process, signal.SIGTERM, timeout=1) is None
    assert time.monotonic() - began < 10
    assert process.returncode == -signal.SIGKILL
    assert child.pid not in {p.pid for p in descendants()}


def test_a_graceful_stop_returns_the_exit_code() -> None:
    process = started("import time; print('ready', flush=True); time.sleep(60)")
    assert stop_tree(process, signal.SIGTERM, timeout=10) == -signal.SIGTERM


def test_an_orphan_stays_a_descendant_of_the_test_run() -> None:
    subprocess.run(["sh", "-c", "sleep 120 >/dev/null 2>&1 &"], check=True)  # sh exits, sleep is orphaned
    [orphan] = [p for p in descendants() if p.command == "sleep 120"]
    kill_tree([orphan])
    deadline = time.monotonic() + 5
    while orphan.pid in {p.pid for p in descendants()}:
        assert time.monotonic() < deadline
        time.sleep(0.05)
