"""``lime authz``, ``lime extproc``, ``lime catalog-api``, ``lime mock-upstream``: run one service."""

from __future__ import annotations

import argparse
import gc
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import uvloop

from lime.cli.process_pool import run_pool
from lime.settings import Settings

__all__ = ["register"]


def _serve(service: Coroutine[Any, Any, None]) -> None:
    """Run a service on uvloop (its loop and transports are C: every gRPC message and Redis command goes through
    them). What start-up allocated is frozen out of the collector's way: a long-lived service's modules and
    catalog would otherwise be traversed again by every full collection."""
    gc.collect()
    gc.freeze()
    uvloop.run(service)


def _authz(args: argparse.Namespace, settings: Settings) -> int:
    if settings.processes > 1:
        return run_pool("authz", "LIME_AUTHZ_ADDR", settings.pool(settings.authz), settings.authz_metrics,
                        drain_seconds=settings.drain_seconds)
    from authz.server import serve

    _serve(serve(settings))
    return 0


def _extproc(args: argparse.Namespace, settings: Settings) -> int:
    if settings.processes > 1:
        return run_pool("extproc", "LIME_EXTPROC_ADDR", settings.pool(settings.extproc), settings.extproc_metrics,
                        drain_seconds=settings.drain_seconds)
    from extproc.server import serve

    _serve(serve(settings))
    return 0


def _catalog_api(args: argparse.Namespace, settings: Settings) -> int:
    from catalog_api.server import serve

    _serve(serve(settings))
    return 0


def _settler(args: argparse.Namespace, settings: Settings) -> int:
    from settler.server import serve

    _serve(serve(settings))
    return 0


def _mock_upstream(args: argparse.Namespace, settings: Settings) -> int:
    from lime.devstack.mock_upstream import MockConfig, run

    address = settings.mock_upstream
    replay_dir = Path(args.replay_dir) if args.replay_dir else _RECORDINGS if _RECORDINGS.is_dir() else None
    _serve(run(address.host, address.port, MockConfig(chunks=args.chunks, delay_ms=args.delay_ms,
                                                      replay_dir=replay_dir)))
    return 0


#: The vendored provider recordings of this checkout, which x-mock-replay answers with (absent from an image
#: built without the tests: then only a --replay-dir given enables replays).
_RECORDINGS = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "providers"


def register(commands: Any) -> None:
    for name, run, text in (
        ("authz", _authz, "run the ext_authz service, Envoy's HTTP mode (LIME_AUTHZ_ADDR; LIME_PROCESSES of it)"),
        ("extproc", _extproc, "run the ext_proc gRPC service (LIME_EXTPROC_ADDR; LIME_PROCESSES of it)"),
        ("settler", _settler, "run the settlement writer and reaper (metrics on LIME_SETTLER_ADDR)"),
        ("catalog-api", _catalog_api, "run the model directory (LIME_CATALOG_ADDR) and admin API (LIME_ADMIN_ADDR)"),
    ):
        commands.add_parser(name, help=text).set_defaults(run=run)
    mock = commands.add_parser("mock-upstream", help="run the mock LLM upstream (LIME_MOCK_UPSTREAM_ADDR)")
    mock.add_argument("--chunks", type=int, default=8, help="text pieces per answer (default 8)")
    mock.add_argument("--delay-ms", type=int, default=0, help="pause between streamed chunks (default 0)")
    mock.add_argument("--replay-dir", help="recorded answers x-mock-replay may name (default: this checkout's "
                                           "tests/fixtures/providers)")
    mock.set_defaults(run=_mock_upstream)
