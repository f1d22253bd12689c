"""Several processes of one gRPC service, one per core: Python runs one thread of work per process, so a pod with N
cores serves N times one process's rate only with N processes (docs/deploy.md has the numbers).

The parent does no request work. It starts ``LIME_PROCESSES`` children of the same command, each listening on its
own address (:meth:`lime.settings.Address.nth`; Envoy's cluster has one endpoint per child, rendered from the same
setting), and serves the pool's ``/metrics`` (every child's values added up, prometheus_client's multiprocess mode)
and ``/ready`` (503 once draining, or while a child is down). A child that dies is started again. SIGTERM drains:
readiness goes false, each child gets SIGTERM and finishes its calls in flight (its own graceful stop), and the
parent leaves when they have.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import FrameType

from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from lime.devstack.embedded import port_open
from lime.metrics import MULTIPROCESS_DIR, Readiness, serve_metrics
from lime.settings import Address

__all__ = ["Pool", "run_pool"]

log = logging.getLogger(__name__)

#: A child that keeps dying is started again no more often than this.
_RESTART_PAUSE_SECONDS = 1.0


class _PoolReadiness(Readiness):
    """Ready while not draining and every child is running and listening."""

    def __init__(self, pool: Pool) -> None:
        super().__init__()
        self._pool = pool

    @property
    def draining(self) -> bool:
        return self._draining or not self._pool.all_running()


@dataclass
class Pool:
    """The children of one service: ``argv`` each, with its address in ``address_variable``."""

    argv: list[str]
    address_variable: str
    addresses: tuple[Address, ...]
    env: Mapping[str, str]
    metrics_dir: str
    children: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    started_at: dict[int, float] = field(default_factory=dict)

    def start(self, index: int) -> None:
        env = {**self.env, self.address_variable: str(self.addresses[index]), "LIME_PROCESSES": "1",
               "LIME_POOL_SIZE": str(len(self.addresses)), MULTIPROCESS_DIR: self.metrics_dir}
        # Same session and process group as the parent: whoever stops the pool's group stops every child too.
        self.children[index] = subprocess.Popen(self.argv, env=env)
        self.started_at[index] = time.monotonic()

    def all_running(self) -> bool:
        return (len(self.children) == len(self.addresses) and all(c.poll() is None for c in self.children.values())
                and all(port_open(a.host, a.port, a.path) for a in self.addresses))

    def restart_dead(self) -> None:
        for index, child in list(self.children.items()):
            if child.poll() is None:
                continue
            mark_process_dead(child.pid, self.metrics_dir)  # type: ignore[no-untyped-call]
            if time.monotonic() - self.started_at[index] < _RESTART_PAUSE_SECONDS:
                continue
            log.error("process %d (pid %d) exited with %s; starting it again", index, child.pid, child.returncode)
            self.start(index)

    def stop(self, patience: float) -> int:
        """SIGTERM every child and wait up to ``patience`` seconds; 0 when all left when asked."""
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + patience
        worst = 0
        for child in self.children.values():
            try:
                code = child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                code = child.wait()
            # Killed by the SIGTERM sent above counts as stopped: a child that had drained already (the group's own
            # SIGTERM reached it too) can be exiting just as it arrives, when its loop no longer handles it.
            worst = worst or (0 if code in (0, -signal.SIGTERM) else 1)
        return worst


def run_pool(service: str, address_variable: str, addresses: tuple[Address, ...], metrics: Address,
             *, drain_seconds: float) -> int:
    """Run ``lime <service>`` as ``len(addresses)`` processes until SIGTERM or SIGINT."""
    stop = False

    def request_stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stop
        stop = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, request_stop)
    metrics_dir = tempfile.mkdtemp(prefix=f"lime-{service}-metrics-")
    pool = Pool([sys.executable, "-m", "lime.cli", service], address_variable, addresses, dict(os.environ),
                metrics_dir)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=metrics_dir)  # type: ignore[no-untyped-call]
    readiness = _PoolReadiness(pool)
    server = serve_metrics(metrics, readiness, registry)
    try:
        for index in range(len(addresses)):
            pool.start(index)
        log.info("%s: %d processes on %s", service, len(addresses), ", ".join(map(str, addresses)))
        while not stop:
            time.sleep(0.1)
            if not stop:
                # A stop that arrived during the sleep reached the children too (the same process group): one that
                # drained at once has exited by now, and must not be started again only to be stopped half-started.
                pool.restart_dead()
        readiness.drain()
        log.info("%s stopping: each process drains its calls in flight for up to %.0fs", service, drain_seconds)
        return pool.stop(drain_seconds + 5)
    finally:
        if server is not None:
            server.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)
