"""py-spy's raw stacks of authz and extproc under load, summarised: where the busy samples are, by package and by
leaf (Python, a native library, a system call), for the bench report's profile section."""

from __future__ import annotations

import collections
from typing import Any

__all__ = ["summarise_profile"]


#: Leaf frames of a thread that waits (py-spy samples wall-clock time; these samples are not CPU).
_IDLE = ("epoll_wait ", "epoll_pwait ", "poll ", "select ", "pthread_cond_wait", "pthread_cond_timedwait", "__futex",
         "futex_wait", "nanosleep ", "clock_nanosleep ", "sem_wait ", "sem_timedwait ")
_AREAS = (("grpc/", "grpc.aio (Python side)"), ("asyncio/", "asyncio event loop"), ("selectors", "asyncio event loop"),
          ("redis/", "redis-py"), ("prometheus_client/", "prometheus_client"), ("json/", "json"),
          ("google/protobuf", "protobuf (Python side)"), ("authz/", "Lime: authz/"), ("extproc/", "Lime: extproc/"),
          ("lime/", "Lime: lime/"), ("threading.py", "grpc poller thread"), ("dataclasses", "dataclasses"),
          ("<string>", "dataclasses"), ("logging/", "logging"), ("psycopg", "psycopg"))


def summarise_profile(folded: str, top: int = 20) -> dict[str, Any]:
    """py-spy's raw stacks (``--native``) -> where the busy samples are: by the innermost Python frame's package
    (Lime's code, grpc.aio, asyncio, redis-py, ...), by what the leaf is (Python, a native library, a system call),
    and the hottest functions. Samples of waiting threads (epoll_wait, poll, futex ...) are left out."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    areas: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    total = busy = 0
    for line in folded.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        if frames[-1].startswith(_IDLE):
            continue
        busy += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
        areas[_area(frames)] += count
        leaves[_leaf(frames[-1])] += count

    def share(n: int) -> float:
        return round(100 * n / busy, 1) if busy else 0.0

    return {
        "samples": total,
        "busy_samples": busy,
        "areas_percent": {area: share(n) for area, n in areas.most_common()},
        "leaf_percent": {leaf: share(n) for leaf, n in leaves.most_common(12)},
        "self_percent": [[frame, share(n)] for frame, n in own.most_common(top)],
        "inclusive_percent": [[frame, share(n)] for frame, n in inclusive.most_common(top + 25)
                              if ".py" in frame and not frame.startswith(("<module>", "_run_code", "_run_module"))],
    }


def _area(frames: list[str]) -> str:
    for frame in reversed(frames):
        where = frame[frame.rfind("(") + 1:]
        if ".py" in where or "<frozen" in where or "<string>" in where:
            for needle, area in _AREAS:
                if needle in where:
                    return area
            return "other Python"
    return "native only (grpc C-core threads)"


def _leaf(frame: str) -> str:
    where = frame[frame.rfind("(") + 1:].rstrip(")")
    if "libc.so" in where:
        return "system call / libc: " + frame.split(" ", 1)[0]
    if ".so" in where:
        return "native: " + where.split("/")[-1].split(".")[0]
    return "Python bytecode"


# --- writing -----------------------------------------------------------------------------------------------
