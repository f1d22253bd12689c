"""``lime envoy check`` and ``lime envoy render``."""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

import psycopg

from lime.cli.stores import with_stores
from lime.envoy.render import RenderedConfig
from lime.settings import Settings

__all__ = ["register"]


async def _catalog_upstreams(url: str) -> list[str]:
    async with await psycopg.AsyncConnection.connect(url, connect_timeout=5) as conn:
        cursor = await conn.execute("SELECT id FROM upstreams ORDER BY id")
        return [row[0] for row in await cursor.fetchall()]


def _check(args: argparse.Namespace, settings: Settings) -> int:
    from lime.envoy.check import check

    path = Path(args.config) if args.config else settings.envoy_config
    upstreams: list[str] = list(args.upstream or [])
    if not args.no_catalog:
        try:
            upstreams += asyncio.run(_catalog_upstreams(with_stores(settings).require_database_url()))
        except (psycopg.Error, OSError) as exc:
            print(f"lime: cannot read the upstreams from the catalog ({exc}); use --no-catalog to skip that part")
            return 2
    report = check(path, sorted(set(upstreams)), run_envoy=not args.skip_validate)
    for problem in report.problems:
        print(f"{path}: {problem.where}: {problem.message}")
    if report.envoy_output and not report.ok:
        print(report.envoy_output)
    print(f"{path}: {'OK' if report.ok else 'FAILED'} (checked upstreams: {', '.join(upstreams) or 'none'})")
    return 0 if report.ok else 1


def _render(args: argparse.Namespace, settings: Settings) -> int:
    rendered = RenderedConfig(settings, Path(args.output))
    print(rendered.render(), flush=True)
    while args.watch:  # beside a running Envoy: edits to the routes and clusters apply without a restart
        time.sleep(1.0)
        rendered.refresh()
    return 0


def register(commands: Any) -> None:
    envoy = commands.add_parser("envoy", help="Envoy configuration").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    check = envoy.add_parser("check", help="verify Lime's invariants, then run envoy --mode validate")
    check.add_argument("--config", help="the Envoy YAML (default: LIME_ENVOY_CONFIG or envoy/envoy.yaml)")
    check.add_argument("--upstream", action="append", help="an upstream id that must be routed (repeatable)")
    check.add_argument("--no-catalog", action="store_true", help="do not read upstream ids from the database")
    check.add_argument("--skip-validate", action="store_true", help="do not run envoy --mode validate")
    check.set_defaults(run=_check)
    render = envoy.add_parser("render", help="write the config with this machine's LIME_*_ADDR filled in")
    render.add_argument("--output", default=".lime/envoy.yaml")
    render.add_argument("--watch", action="store_true",
                        help="keep running and render again whenever the source files change")
    render.set_defaults(run=_render)
