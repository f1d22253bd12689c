"""What the bench runs against, all on loopback and free ports, started once and stopped at the end:

* throwaway PostgreSQL and Redis (:mod:`lime.devstack.embedded`), migrated and seeded with ``lime up``'s demo catalog
  (:func:`lime.devstack.demo.seed_demo`: tenant ``demo``, its key, ``lime-chat`` on the mock), plus points for the run;
* the mock upstream (:mod:`bench.mock`);
* bare Envoy: one listener, the router, one cluster to the mock (the floor any Envoy-based gateway stands on);
* Lime: the whole stack as ``lime up`` runs it (:class:`lime.devstack.stack.Stack`: Envoy, authz, extproc, catalog_api,
  settler), its upstream ``mock`` pointed at the same mock;
* optionally the LiteLLM proxy (its own virtualenv, see the Makefile's ``bench`` target) on the same mock.

Lime runs through :class:`lime.devstack.stack.Stack`; the others the same way (own session, stopped by PID).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import redis.asyncio as aioredis
import yaml

from lime.devstack.demo import DEMO_TENANT, DemoAccess, seed_demo
from lime.devstack.embedded import EmbeddedPostgres, EmbeddedRedis, free_port, port_open
from lime.devstack.stack import Stack
from lime.envoy.bootstrap import envoy_binary
from lime.money import balances
from lime.settings import ADDRESS_NAMES, Address, Settings, child_environment
from lime.store.migrate import apply_migrations

__all__ = ["CHAT_PATH", "Environment", "Target", "bench_environment"]

CHAT_PATH = "/v1/chat/completions"
MODEL = "lime-chat"
#: What the demo tenant gets for the run: far more than any run reserves or spends.
POINTS = 10**15
LITELLM_KEY = "sk-bench-litellm-master"  # a throwaway key for a proxy on loopback
ENVOY_CONCURRENCY = 2


@dataclass
class Target:
    """One thing to put load on: where, with which headers, and which processes' CPU is its cost."""

    name: str
    label: str
    origin: str
    headers: dict[str, str]
    #: name -> process group id of the processes that serve this target (the mock is reported on its own).
    groups: dict[str, int] = field(default_factory=dict)
    #: Python services among ``groups`` (their CPU is the one the targets of issue 7 bound).
    python: tuple[str, ...] = ()
    #: The model name for streamed requests, when the target cannot pass the client's x-mock-* headers on.
    stream_model: str = MODEL
    #: Whether the answer's events reach the client as the mock wrote them (with their timestamps).
    passes_events: bool = True

    @property
    def url(self) -> str:
        return self.origin + CHAT_PATH


@dataclass
class Environment:
    targets: list[Target]
    mock_group: int
    store_groups: dict[str, int]
    versions: dict[str, str]
    log_dir: Path


class _Process:
    """One auxiliary process (the mock, bare Envoy, LiteLLM) the way :class:`lime.devstack.stack.Stack` runs Lime's:
    a child in its own session, owned by PID, ready when its port answers, stopped with SIGTERM (SIGKILL if it
    lingers)."""

    def __init__(self, name: str, argv: list[str], ready: Address, env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.ready = ready
        log_dir.mkdir(parents=True, exist_ok=True)
        self._log_path = log_dir / f"{name}.log"
        if port_open(ready.host, ready.port):
            raise RuntimeError(f"{name}: {ready} is already in use by another process")
        with open(self._log_path, "ab") as log:
            self.process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not port_open(self.ready.host, self.ready.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                tail = self._log_path.read_text(errors="replace")[-3000:]
                self.stop()
                raise RuntimeError(f"{self.name} did not start listening on {self.ready}:\n{tail}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def _started(exits: contextlib.ExitStack, process: _Process, timeout: float = 60.0) -> _Process:
    exits.callback(process.stop)
    process.wait_ready(timeout)
    return process


def _pid(stack: Stack, name: str) -> int:
    process = stack.services[name].process
    assert process is not None
    return process.pid


def bare_envoy_config(listen: Address, admin: Address, upstream: Address) -> dict[str, Any]:
    """Envoy with nothing but the router: one listener, one route, one cluster (HTTP/1.1 to the mock)."""
    def socket(address: Address) -> dict[str, Any]:
        return {"socket_address": {"address": address.host, "port_value": address.port}}

    manager = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
                 ".HttpConnectionManager",
        "stat_prefix": "bare",
        "codec_type": "AUTO",
        "route_config": {"name": "bare", "virtual_hosts": [{
            "name": "all", "domains": ["*"],
            "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "mock", "timeout": "0s"}}]}]},
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
    }
    return {
        "admin": {"address": socket(admin)},
        "static_resources": {
            "listeners": [{"name": "bare", "address": socket(listen), "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager", "typed_config": manager}]}]}],
            "clusters": [{"name": "mock", "type": "STATIC", "connect_timeout": "2s", "load_assignment": {
                "cluster_name": "mock",
                "endpoints": [{"lb_endpoints": [{"endpoint": {"address": socket(upstream)}}]}]}}],
        },
    }


def litellm_config(mock: Address, stream_chunks: int, stream_delay_ms: int) -> dict[str, Any]:
    """LiteLLM's proxy on the same mock. It does not pass a client's x-mock-* headers on, so streamed requests
    use a second model name whose upstream calls carry them."""
    base = {"model": f"openai/{MODEL}", "api_base": f"http://{mock}/v1", "api_key": "mock-key"}
    return {
        "model_list": [
            {"model_name": MODEL, "litellm_params": base},
            {"model_name": f"{MODEL}-stream", "litellm_params": {**base, "extra_headers": {
                "x-mock-chunks": str(stream_chunks), "x-mock-delay-ms": str(stream_delay_ms)}}},
        ],
        "general_settings": {"master_key": LITELLM_KEY},
        "litellm_settings": {"drop_params": True, "set_verbose": False, "json_logs": False},
    }


async def _seed(database_url: str, redis_url: str, state_dir: Path) -> DemoAccess:
    await apply_migrations(database_url)
    redis = aioredis.Redis.from_url(redis_url)
    try:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            access = await seed_demo(conn, redis, state_dir)
            await balances.grant_points(conn, redis, DEMO_TENANT, POINTS, "bench")
            return access
    finally:
        await redis.aclose()


def _versions(litellm: Path | None) -> dict[str, str]:
    import grpc

    envoy = envoy_binary() or "envoy"
    import subprocess

    out = subprocess.run([envoy, "--version"], capture_output=True, text=True, check=False).stdout
    versions = {
        "python": sys.version.split()[0],
        "grpcio": grpc.__version__,
        "envoy": out.strip().split("version:")[-1].strip().split("/")[1] if "/" in out else out.strip(),
    }
    for tool in ("wrk", "h2load"):
        text = subprocess.run([tool, "--version"], capture_output=True, text=True, check=False)
        first = (text.stdout or text.stderr).strip().splitlines()
        versions[tool] = first[0].split(" Copyright")[0] if first else "?"
    if litellm is not None:
        pip = subprocess.run([str(litellm.parent / "python"), "-c",
                              "import importlib.metadata as m; print(m.version('litellm'))"],
                             capture_output=True, text=True, check=False)
        versions["litellm"] = pip.stdout.strip()
    return versions


def _wait_http(url: str, headers: dict[str, str], body: bytes, timeout: float) -> None:
    """Until ``url`` answers a chat completion with 200 (a catalog reaches the services by NOTIFY)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        request = urllib.request.Request(  # noqa: S310 - the bench's own http:// loopback URL
            url, data=body, headers={"content-type": "application/json", **headers})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
                if response.status == 200:
                    return
        except OSError as error:
            last = str(error)
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer 200 within {timeout:.0f}s: {last}")


@contextlib.contextmanager
def bench_environment(*, mock_workers: int = 1, litellm: Path | None = None,
                      litellm_workers: tuple[int, ...] = (1,), lime_processes: int = 1, stream_chunks: int = 50,
                      stream_delay_ms: int = 20, envoy_concurrency: int = ENVOY_CONCURRENCY,
                      work_dir: Path | None = None) -> Iterator[Environment]:
    with contextlib.ExitStack() as exits:
        if work_dir is None:
            work_dir = Path(exits.enter_context(tempfile.TemporaryDirectory(prefix="lime-bench-")))
        log_dir = work_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        postgres = EmbeddedPostgres(work_dir / "postgres", free_port(), durable=False)
        # Redis over a Unix socket, as `lime up` runs its own (docs/performance.md, "Per-message costs").
        redis_server = EmbeddedRedis(work_dir / "redis", free_port(), appendonly=False,
                                     unix_socket=work_dir / "sockets" / "redis.sock")
        for server in (postgres, redis_server):
            server.start()
            exits.callback(server.stop)
        access = asyncio.run(_seed(postgres.url, redis_server.url, work_dir / "state"))

        env = {name: value for name, value in child_environment({}).items() if not name.startswith("LIME_")}
        env.update({
            "LIME_DATABASE_URL": postgres.url,
            "LIME_REDIS_URL": redis_server.url,
            "LIME_ADMIN_TOKEN": "bench-admin-token",
            "LIME_CATALOG_SECRET": "bench-catalog-secret",
            "LIME_UPSTREAM_KEY_MOCK": "mock-upstream-key",
            "LIME_UPSTREAM_KEY_MOCK_ANTHROPIC": "mock-upstream-key",
            "LIME_STATE_DIR": str(work_dir / "state"),
            "LIME_LOG_LEVEL": "WARNING",
            "LIME_PROCESSES": str(lime_processes),
        })
        for name in ADDRESS_NAMES:
            env[f"LIME_{name}_ADDR"] = f"127.0.0.1:{free_port()}"
        # Envoy reaches authz and extproc over Unix sockets, as in the gateway pod (docs/deploy.md).
        sockets = work_dir / "sockets"
        sockets.mkdir(parents=True, exist_ok=True)
        env["LIME_AUTHZ_ADDR"] = f"unix:{sockets / 'authz.sock'}"
        env["LIME_EXTPROC_ADDR"] = f"unix:{sockets / 'extproc.sock'}"
        settings = Settings.from_env(env)
        python = [sys.executable]

        mock = _started(exits, _Process("mock", [
            *python, "-m", "bench.mock", "--port", str(settings.mock_upstream.port), "--workers", str(mock_workers),
        ], settings.mock_upstream, env, log_dir / "mock"))

        bare_listen, bare_admin = Address("127.0.0.1", free_port()), Address("127.0.0.1", free_port())
        bare_file = log_dir / "bare-envoy.yaml"
        bare_file.write_text(yaml.safe_dump(bare_envoy_config(bare_listen, bare_admin, settings.mock_upstream)))
        binary = envoy_binary()
        assert binary is not None
        bare = _started(exits, _Process("envoy", [
            binary, "-c", str(bare_file), "--use-dynamic-base-id", "--concurrency", str(envoy_concurrency),
            "--log-level", "warn"], bare_listen, env, log_dir / "bare-envoy"))

        lime = Stack(settings, env, log_dir / "lime", with_mock=False, envoy_concurrency=envoy_concurrency)
        exits.callback(lime.stop)
        lime.start(timeout=60)

        client_headers = {"authorization": f"Bearer {access.key}", "x-lime-tenant-id": access.tenant_id}
        body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]}).encode()
        targets = [
            Target("mock", "mock upstream (direct)", f"http://{settings.mock_upstream}", client_headers),
            Target("envoy", "bare Envoy", f"http://{bare_listen}", client_headers, {"envoy": bare.pid}),
            Target("lime", "Lime (full stack)", f"http://{settings.public}", client_headers,
                   {name: _pid(lime, name) for name in ("envoy", "authz", "extproc", "catalog_api", "settler")},
                   python=("authz", "extproc", "catalog_api", "settler")),
        ]
        if litellm is not None:
            config = log_dir / "litellm.yaml"
            config.write_text(yaml.safe_dump(litellm_config(settings.mock_upstream, stream_chunks, stream_delay_ms)))
            # Its bundled model price list, not a download at start-up (the bench runs on loopback only).
            litellm_env = {**env, "LITELLM_LOG": "ERROR", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
            for workers in litellm_workers:
                listen = Address("127.0.0.1", free_port())
                name = litellm_target_name(workers)
                proxy = _started(exits, _Process(name, [
                    str(litellm), "--config", str(config), "--host", listen.host, "--port", str(listen.port),
                    "--num_workers", str(workers)], listen, litellm_env, log_dir / name), timeout=180)
                targets.append(Target(name, f"LiteLLM proxy, {workers} worker{'s' if workers > 1 else ''}",
                                      f"http://{listen}", {"authorization": f"Bearer {LITELLM_KEY}"},
                                      {"litellm": proxy.pid}, python=("litellm",), stream_model=f"{MODEL}-stream",
                                      passes_events=False))
        for target in targets:
            _wait_http(target.url, target.headers, body, timeout=60)
        assert port_open(settings.mock_upstream.host, settings.mock_upstream.port)
        yield Environment(
            targets=targets,
            mock_group=mock.pid,
            store_groups={"redis": _server_pid(redis_server), "postgres": _server_pid(postgres)},
            versions=_versions(litellm),
            log_dir=log_dir,
        )


def litellm_target_name(workers: int) -> str:
    """``litellm`` for one worker (the name earlier reports used), ``litellm-<n>w`` for more."""
    return "litellm" if workers == 1 else f"litellm-{workers}w"


def _server_pid(server: EmbeddedPostgres | EmbeddedRedis) -> int:
    process = server._proc  # the embedded servers keep their process to themselves; the bench only reads its CPU
    assert process is not None
    return process.pid
