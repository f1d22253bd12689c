"""The ``lime`` command: run the stack, run one service, administer the catalog."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import psycopg
from redis.exceptions import RedisError

from lime.cli import admin_commands, billing_commands, envoy_commands, serve_commands, up_command
from lime.protocols.errors import LimeError
from lime.settings import Settings, SettingsError

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lime", description="Lime LLM gateway")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    up_command.register(commands)
    serve_commands.register(commands)
    envoy_commands.register(commands)
    admin_commands.register(commands)
    billing_commands.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        logging.basicConfig(level=settings.log_level, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        code = args.run(args, settings)
    except (SettingsError, LimeError) as error:
        print(f"lime: {error}", file=sys.stderr)
        code = 2
    except (psycopg.Error, RedisError) as error:
        print(f"lime: the store did not answer: {error}".rstrip(), file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        code = 130
    sys.exit(code or 0)
