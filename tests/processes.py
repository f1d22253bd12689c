"""The processes a test run started, found from /proc, and stopped for good.

The suite makes its pytest process a *child subreaper* (Linux ``PR_SET_CHILD_SUBREAPER``): a process whose parent
dies (the services of a ``lime up`` that was killed) is re-parented to pytest instead of init, so it is still a
descendant here, and the end-of-session check (tests/conftest.py) sees it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Proc", "become_subreaper", "descendants", "kill_tree", "stop_tree"]

_PR_SET_CHILD_SUBREAPER = 36


@dataclass(frozen=True)
class Proc:
    pid: int
    pgid: int
    command: str

    def __str__(self) -> str:
        return f"{self.pid} (group {self.pgid}): {self.command[:160]}"


def become_subreaper() -> bool:
    """Orphaned descendants come to this process rather than to init; ``False`` where Linux does not allow it."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def _stat(pid: int) -> tuple[int, int, str] | None:
    """(parent pid, process group, state) from /proc/<pid>/stat; None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces or parentheses itself.
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[1]), int(fields[2]), fields[0]


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def descendants(root: int | None = None) -> list[Proc]:
    """Every living (not zombie) process below ``root`` (this process by default)."""
    root = os.getpid() if root is None else root
    children: dict[int, list[tuple[int, int]]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = _stat(int(entry.name))
        if stat is not None and stat[2] not in ("Z", "X"):
            children.setdefault(stat[0], []).append((int(entry.name), stat[1]))
    found: list[Proc] = []
    todo = [root]
    while todo:
        for pid, pgid in children.get(todo.pop(), []):
            found.append(Proc(pid, pgid, _command(pid)))
            todo.append(pid)
    return found


def kill_tree(procs: list[Proc]) -> None:
    """SIGKILL each process's whole group (a service started in a session of its own takes its children along)."""
    for proc in procs:
        for kill, target in ((os.killpg, proc.pgid), (os.kill, proc.pid)):
            if target == os.getpgrp():
                continue  # never the test run's own group
            with contextlib.suppress(ProcessLookupError, PermissionError):
                kill(target, signal.SIGKILL)


def _alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[2] not in ("Z", "X")


def stop_tree(process: subprocess.Popen[bytes], sig: signal.Signals, timeout: float) -> int | None:
    """Send ``sig`` and wait up to ``timeout`` for a graceful exit; if it does not come, SIGKILL the process's group
    and every process below it, and return ``None`` (the test then fails on the exit code it expected). Either way,
    what it started and left running is killed too."""
    below = descendants(process.pid)
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(sig)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        kill_tree([Proc(process.pid, process.pid, ""), *below, *descendants(process.pid)])
        process.wait()
        return None
    finally:
        # Its children may take a moment to follow it out (or to be re-parented to the subreaper).
        deadline = time.monotonic() + 2
        left = [p for p in below if _alive(p.pid)]
        while left and time.monotonic() < deadline:
            time.sleep(0.05)
            left = [p for p in left if _alive(p.pid)]
        kill_tree(left)
