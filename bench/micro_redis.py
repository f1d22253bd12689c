"""What a Redis command costs over loopback TCP and over a Unix socket (issue 19, requirement 3c).

``python -m bench.micro_redis``: one private redis-server listening on both (``lime.devstack.embedded``), and
redis.asyncio on uvloop with the services' pool (``lime.connections.open_redis``) sending N ``EVALSHA`` of a
small script (an ``INCR`` and a ``HSET``, about what a reservation script touches) then N ``GET``: one command at a
time (the latency of a round trip), and 32 at a time (a loaded service). Measured per command: the wall time, the
client's CPU (this process) and redis-server's CPU (``/proc/<pid>/stat``). The transports take turns, round after
round, and the medians are shown.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import uvloop

from lime.connections import open_redis
from lime.devstack.embedded import EmbeddedRedis, free_port
from lime.settings import Settings

__all__ = ["main"]

_SCRIPT = "redis.call('INCR', KEYS[1]); redis.call('HSET', KEYS[2], 'at', ARGV[1]); return 1"
_TICKS = os.sysconf("SC_CLK_TCK")


def _server_cpu(pid: int) -> float:
    """Seconds of CPU (user + system) the process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


async def _run(url: str, commands: int, concurrency: int, pid: int) -> dict[str, float]:
    """µs per command: wall, client CPU, server CPU, for the EVALSHA and the GET workloads."""
    results: dict[str, float] = {}
    async with open_redis(Settings(redis_url=url)) as client:
        sha = await client.script_load(_SCRIPT)
        await client.set("bench:key", "x" * 64)
        workloads: dict[str, Callable[[], Awaitable[object]]] = {
            "evalsha": lambda: client.evalsha(sha, 2, "bench:counter", "bench:hash", "1"),
            "get": lambda: client.get("bench:key"),
        }
        for name, command in workloads.items():
            for _ in range(concurrency * 4):  # warm the pool's connections
                await command()

            async def worker(count: int, command: Callable[[], Awaitable[object]] = command) -> None:
                for _ in range(count):
                    await command()

            wall, cpu, server = time.perf_counter(), time.process_time(), _server_cpu(pid)
            await asyncio.gather(*(worker(commands // concurrency) for _ in range(concurrency)))
            done = commands // concurrency * concurrency
            results[f"{name} wall"] = (time.perf_counter() - wall) / done * 1e6
            results[f"{name} client"] = (time.process_time() - cpu) / done * 1e6
            results[f"{name} server"] = (_server_cpu(pid) - server) / done * 1e6
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.micro_redis", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commands", type=int, default=20_000, help="commands per workload and round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per transport; the median is shown")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="lime-micro-redis-") as work:
        server = EmbeddedRedis(Path(work) / "redis", free_port(), appendonly=False,
                               unix_socket=Path(work) / "redis.sock")
        with server:
            assert server._proc is not None
            pid = server._proc.pid
            transports = {"loopback TCP": server.tcp_url, "Unix socket": server.url}
            print(f"µs per command (median of {args.rounds} rounds of {args.commands:,}); wall / client CPU / "
                  "redis-server CPU")
            for concurrency in (1, 32):
                samples: dict[str, dict[str, list[float]]] = {name: {} for name in transports}
                for _ in range(args.rounds):
                    for name, url in transports.items():
                        measured = uvloop.run(_run(url, args.commands, concurrency, pid))
                        for key, value in measured.items():
                            samples[name].setdefault(key, []).append(value)
                print(f"\n{concurrency} command{'s' if concurrency > 1 else ''} in flight")
                for name, values in samples.items():
                    medians = {key: statistics.median(series) for key, series in values.items()}
                    print(f"  {name:<13}" + "".join(
                        f"  {kind}: {medians[kind + ' wall']:6.1f} / {medians[kind + ' client']:5.1f} / "
                        f"{medians[kind + ' server']:5.1f}" for kind in ("evalsha", "get")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
