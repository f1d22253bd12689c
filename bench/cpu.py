"""CPU time of processes, from ``/proc/<pid>/stat`` (utime + stime, all threads), read before and after a phase.

A service's CPU is that of its whole process tree: the processes it forks (the mock's and LiteLLM's workers,
PostgreSQL's backends, which leave their parent's process group) are counted with it, and so are those that already
exited (their time is in their parent's cutime/cstime once reaped).
"""

from __future__ import annotations

import os
import resource
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CpuSnapshot", "group_cpu_seconds", "process_trees", "snapshot"]

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(text: str) -> list[str]:
    # The command name (field 2) may hold spaces and parentheses: the fields after it start after the last ")".
    return text[text.rindex(")") + 2:].split()


def _processes() -> tuple[dict[int, int], dict[int, int]]:
    """Every live process's parent and CPU ticks so far (its own and its reaped children's)."""
    parent: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = _stat_fields((entry / "stat").read_text())
        except (OSError, ValueError):
            continue  # gone meanwhile
        # After the name: state(3) ppid(4) ... utime(14) stime(15) cutime(16) cstime(17): index = field - 3.
        pid = int(entry.name)
        parent[pid] = int(fields[1])
        ticks[pid] = int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    return parent, ticks


def _owners(roots: Mapping[str, int], parent: Mapping[int, int]) -> dict[int, str]:
    """pid -> the name of the tree (by name -> pid of its root) it belongs to, for the processes in one."""
    owner = {pid: name for name, pid in roots.items()}
    found: dict[int, str] = {}
    for pid in parent:
        at, hops = pid, 0
        while at not in owner and at > 1 and hops < 64:
            at, hops = parent.get(at, 0), hops + 1
        if at in owner:
            found[pid] = owner[at]
    return found


def process_trees(roots: Mapping[str, int]) -> dict[str, list[int]]:
    """The live processes of each process tree (by name -> pid of its root), its root included."""
    parent, _ = _processes()
    trees: dict[str, list[int]] = {name: [] for name in roots}
    for pid, name in _owners(roots, parent).items():
        trees[name].append(pid)
    return trees


def group_cpu_seconds(roots: Mapping[str, int]) -> dict[str, float]:
    """CPU seconds so far of each process tree (by name -> pid of its root): user and system time of every live
    process in it, plus that of its reaped children."""
    parent, ticks = _processes()
    totals = dict.fromkeys(roots, 0.0)
    for pid, name in _owners(roots, parent).items():
        totals[name] += ticks[pid] / _TICKS
    return totals


@dataclass(frozen=True)
class CpuSnapshot:
    groups: dict[str, float]
    #: The bench process itself (the streaming client runs in it) and the load generators it ran and reaped.
    client: float
    children: float

    def minus(self, before: CpuSnapshot) -> dict[str, float]:
        out = {name: seconds - before.groups.get(name, 0.0) for name, seconds in self.groups.items()}
        out["load generator"] = self.children - before.children
        out["bench client"] = self.client - before.client
        return out


def snapshot(groups: Mapping[str, int]) -> CpuSnapshot:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return CpuSnapshot(group_cpu_seconds(groups), own.ru_utime + own.ru_stime,
                       children.ru_utime + children.ru_stime)
