"""Helpers shared by the offline checks of docker-compose.yml and deploy/k8s (no Docker engine, no cluster).

The probes and hooks those files declare are real commands: :func:`run_probe` runs one on this machine against a
listener made by :func:`tcp_listener`, :func:`unix_listener` or :func:`http_server`, so a typo in a one-liner, or a
probe that passes with nothing listening, fails here rather than in a deployment.
"""

from __future__ import annotations

import contextlib
import http.server
import io
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from lime.cli import build_parser

__all__ = [
    "ROOT",
    "HttpServer",
    "http_server",
    "lime_command_error",
    "run_probe",
    "tcp_listener",
    "unix_listener",
]

ROOT = Path(__file__).resolve().parents[1]


def lime_command_error(argv: Sequence[str]) -> str | None:
    """Why ``lime <argv>`` would not start (an unknown command or option), or ``None`` when lime accepts it."""
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
            build_parser().parse_args(list(argv))
    except SystemExit:
        return errors.getvalue().strip() or f"lime {' '.join(argv)} exits at once"
    return None


def run_probe(argv: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 20) -> int:
    """Run a probe command whose program is ``python`` with this interpreter; its exit code."""
    if argv[0] not in ("python", "python3"):
        raise AssertionError(f"only Python probes can run here, got {argv[0]!r}")
    result = subprocess.run([sys.executable, *argv[1:]], env=dict(env or {}), capture_output=True, timeout=timeout,
                            check=False)
    return result.returncode


@contextlib.contextmanager
def tcp_listener() -> Iterator[int]:
    """A loopback TCP port that accepts connections; yields the port."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server.getsockname()[1]


@contextlib.contextmanager
def unix_listener(path: Path) -> Iterator[Path]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        server.listen()
        yield path


class HttpServer:
    """Answers 200 on ``paths`` (GET and POST), 404 elsewhere, and records every request as ``(method, path)``."""

    def __init__(self, paths: Mapping[str, bytes]) -> None:
        self.paths = dict(paths)
        self.requests: list[tuple[str, str]] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                owner.requests.append((self.command, self.path))
                body = owner.paths.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header("content-length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            do_GET = do_POST = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port: int = self._server.server_address[1]

    def __enter__(self) -> HttpServer:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def http_server(paths: Mapping[str, bytes]) -> HttpServer:
    return HttpServer(paths)
