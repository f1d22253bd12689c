"""Private throwaway PostgreSQL and Redis servers run from the machine's own binaries.

Used by `lime up` when no database is configured and nothing answers on the default
ports, and by the test suite (whose fault tests stop, kill and restart them).

Each server is a direct child process started in its own session, so:
  * we own its PID and can signal it (and, for PostgreSQL, its backends) as a group;
  * a terminal Ctrl-C reaches only the parent, which then stops the servers cleanly
    (context manager exit, or the atexit hook registered on start).
atexit does not run if the parent dies from an unhandled SIGTERM/SIGKILL; callers that
must survive SIGTERM should turn it into SystemExit.
"""

from __future__ import annotations

import atexit
import os
import pwd
import random
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import psycopg
import redis
from psycopg import conninfo, sql

__all__ = ["UNIX_PATH_MAX", "EmbeddedPostgres", "EmbeddedRedis", "ensure_database", "free_port", "port_open"]

_PG_OS_USER = "postgres"
_DB_NAME = "lime"


#: The longest path a Unix socket address holds on Linux (``sun_path`` is 108 bytes, the last a NUL).
UNIX_PATH_MAX = 107

#: Below Linux's ephemeral range (32768-60999): a port the OS picked from that range can be taken a moment later as
#: the source port of any outgoing connection (Envoy's, the SDKs'), which made a listener fail to bind now and then.
_LISTEN_PORTS = range(20_000, 32_000)


def free_port() -> int:
    """A TCP port that was free a moment ago, outside the ephemeral range (still racy between two callers)."""
    for _ in range(100):
        port = random.choice(_LISTEN_PORTS)  # noqa: S311 - a port number, not a secret
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free TCP port between 20000 and 32000")


def port_open(host: str, port: int, path: str | None = None) -> bool:
    """True if something accepts connections on host:port (or on the Unix socket at ``path``)."""
    try:
        if path is not None:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as unix:
                unix.settimeout(0.5)
                unix.connect(path)
            return True
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def ensure_database(url: str) -> None:
    """Create the database named in ``url`` if the server does not have it yet."""
    info = conninfo.conninfo_to_dict(url)
    name = str(info.get("dbname") or _DB_NAME)
    admin = conninfo.make_conninfo(url, dbname="postgres")
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class _Server:
    """Process bookkeeping shared by both servers."""

    name = "server"
    _crash_signal = signal.SIGKILL

    def __init__(self, data_dir: Path, port: int, host: str) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.port = port
        self.host = host
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        # A sibling of data_dir: initdb insists on an empty directory, so the log can't live inside.
        return self.data_dir.parent / f"{self.data_dir.name}.log"

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _spawn(self, argv: list[str], **kwargs: Any) -> None:
        if self.is_running():
            return
        if port_open(self.host, self.port):
            # Otherwise the readiness probe would happily talk to someone else's server.
            raise RuntimeError(f"{self.name}: port {self.host}:{self.port} is already in use")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            # Own session: terminal signals go to the parent only, and kill() can hit the whole group.
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **kwargs,
            )
        atexit.register(self.stop)

    def _wait_ready(self, probe: Callable[[], None], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if not self.is_running():
                self._proc = None
                atexit.unregister(self.stop)
                raise RuntimeError(f"{self.name} exited during startup; log tail:\n{self._log_tail()}")
            try:
                probe()
                return
            except Exception as e:  # not up yet: refused, "starting up", loading AOF...
                last = e
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(
            f"{self.name} did not accept connections on {self.host}:{self.port} within {timeout}s "
            f"({last!r}); log tail:\n{self._log_tail()}"
        )

    def _log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError as e:
            return f"<no log: {e}>"

    def _signal_and_wait(self, sig: signal.Signals, timeout: float) -> None:
        """Send sig to the server; if it is not gone within timeout, SIGKILL its whole group."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.kill(proc.pid, sig)
                proc.wait(timeout)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                pass
        # Also catches leftovers (PostgreSQL backends, a Redis AOF-rewrite child) that
        # would keep shared memory or files busy and break an immediate restart.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()
        self._proc = None
        atexit.unregister(self.stop)

    def kill(self) -> None:
        """Crash the server for fault tests: no clean shutdown; the next start() recovers."""
        self._signal_and_wait(self._crash_signal, 5.0)

    def start(self, timeout: float = 30.0) -> None:
        raise NotImplementedError

    def stop(self, timeout: float = 30.0) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _pg_bin_dir() -> Path:
    """The newest /usr/lib/postgresql/<ver>/bin, else wherever initdb is on PATH."""
    candidates = [
        d for d in Path("/usr/lib/postgresql").glob("*/bin") if (d / "initdb").is_file() and (d / "postgres").is_file()
    ]

    def version(d: Path) -> tuple[int, ...]:
        try:
            return tuple(int(p) for p in d.parent.name.split("."))
        except ValueError:
            return (0,)

    if candidates:
        return max(candidates, key=version)
    initdb = shutil.which("initdb")
    if initdb and (Path(initdb).resolve().parent / "postgres").is_file():
        return Path(initdb).resolve().parent
    raise RuntimeError("PostgreSQL binaries not found (looked in /usr/lib/postgresql/*/bin and PATH)")


class EmbeddedPostgres(_Server):
    """A private PostgreSQL cluster in data_dir; trust auth, TCP only, database `lime`."""

    name = "postgres"
    # Immediate shutdown: exit without a checkpoint, so the next start runs WAL crash
    # recovery exactly as after a real crash. Unlike SIGKILL, the postmaster still
    # reaps its backends, which would otherwise be orphaned and linger as zombies.
    _crash_signal = signal.SIGQUIT

    def __init__(self, data_dir: Path, port: int, host: str = "127.0.0.1", durable: bool = True) -> None:
        super().__init__(data_dir, port, host)
        self.durable = durable

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{_url_host(self.host)}:{self.port}/{_DB_NAME}"

    def _run_as(self) -> dict[str, Any]:
        """Popen kwargs that drop root to the postgres user (initdb/postgres refuse to run as root).

        Popen(user=...) instead of `runuser`: no intermediate process, so the PID we hold
        is the postmaster itself and our signals reach it directly.
        """
        if os.geteuid() != 0:
            return {}
        pw = pwd.getpwnam(_PG_OS_USER)
        return {
            "user": pw.pw_uid,
            "group": pw.pw_gid,
            "extra_groups": [],
            "env": {**os.environ, "HOME": pw.pw_dir, "USER": _PG_OS_USER, "LOGNAME": _PG_OS_USER},
        }

    def _prepare_dir(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0:
            os.chmod(self.data_dir, 0o700)
            return
        pw = pwd.getpwnam(_PG_OS_USER)
        # PostgreSQL requires data_dir be owned by its user with mode 0700.
        if self.data_dir.stat().st_uid != pw.pw_uid:
            os.chown(self.data_dir, pw.pw_uid, pw.pw_gid)
        os.chmod(self.data_dir, 0o700)
        # The postgres user must also be able to *traverse* every ancestor. Root's state
        # folders are often not: /root is 0700 and pytest's /tmp/pytest-of-root is 0700
        # (pytest even re-tightens it each session, so this runs on every start). Add
        # only o+x (search, not list) where it is missing: file names stay unreadable,
        # and the data stays where the caller put it rather than being relocated.
        for parent in self.data_dir.parents:
            st = parent.stat()
            if not st.st_mode & stat.S_IXOTH:
                os.chmod(parent, stat.S_IMODE(st.st_mode) | stat.S_IXOTH)

    def _initdb(self, bin_dir: Path) -> None:
        argv = [
            str(bin_dir / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-instructions",
        ]
        if not self.durable:
            argv.append("--no-sync")
        # cwd=data_dir: initdb calls getcwd(), which fails as postgres in an untraversable cwd.
        res = subprocess.run(
            argv,
            cwd=self.data_dir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
            **self._run_as(),
        )
        if res.returncode != 0:
            out = (res.stdout + res.stderr).decode(errors="replace")
            raise RuntimeError(f"initdb failed ({res.returncode}) in {self.data_dir}:\n{out}")

    def start(self, timeout: float = 30.0) -> None:
        if self.is_running():
            return
        bin_dir = _pg_bin_dir()
        self._prepare_dir()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb(bin_dir)
        argv = [
            str(bin_dir / "postgres"),
            "-D",
            str(self.data_dir),
            "-p",
            str(self.port),
            "-c",
            f"listen_addresses={self.host}",
            # TCP only: no socket dir to share with (or need write access to, e.g.
            # /var/run/postgresql) a system PostgreSQL, and no 107-byte path limit.
            "-c",
            "unix_socket_directories=",
        ]
        if not self.durable:
            # Only an OS crash can lose data now. Not synchronous_commit=off: that lets a
            # killed server (fault tests) lose commits that the client already saw succeed.
            argv += ["-c", "fsync=off", "-c", "full_page_writes=off"]
        self._spawn(argv, cwd=self.data_dir, **self._run_as())
        admin = f"postgresql://postgres@{_url_host(self.host)}:{self.port}/postgres"

        def probe() -> None:
            psycopg.connect(admin, connect_timeout=2).close()

        self._wait_ready(probe, timeout)
        ensure_database(self.url)

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (SIGINT: roll back open transactions, checkpoint, exit)."""
        self._signal_and_wait(signal.SIGINT, timeout)


class EmbeddedRedis(_Server):
    """A private redis-server writing its files (AOF, if enabled) into data_dir. With ``unix_socket`` it listens
    there too, and :attr:`url` names it: cheaper per command than loopback TCP (docs/performance.md, "Per-message
    costs"), which stays open (:attr:`tcp_url`)."""

    name = "redis"

    def __init__(self, data_dir: Path, port: int, host: str = "127.0.0.1", appendonly: bool = True,
                 unix_socket: Path | None = None) -> None:
        super().__init__(data_dir, port, host)
        self.appendonly = appendonly
        self.unix_socket = Path(unix_socket).absolute() if unix_socket is not None else None
        if self.unix_socket is not None and len(os.fsencode(self.unix_socket)) > UNIX_PATH_MAX:
            raise ValueError(f"a Unix socket path holds at most {UNIX_PATH_MAX} bytes: {self.unix_socket}")

    @property
    def url(self) -> str:
        """How clients reach it: the Unix socket when there is one, else TCP."""
        if self.unix_socket is not None:
            return f"unix://{self.unix_socket}?db=0"
        return self.tcp_url

    @property
    def tcp_url(self) -> str:
        return f"redis://{_url_host(self.host)}:{self.port}/0"

    def start(self, timeout: float = 30.0) -> None:
        if self.is_running():
            return
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found on PATH")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--dir",
            str(self.data_dir),
            "--daemonize",
            "no",  # stay our child so we own the PID
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
        ]
        if self.unix_socket is not None:
            self.unix_socket.parent.mkdir(parents=True, exist_ok=True)
            argv += ["--unixsocket", str(self.unix_socket), "--unixsocketperm", "700"]
        self._spawn(argv, cwd=self.data_dir)

        def probe() -> None:
            client = redis.Redis.from_url(self.url, socket_timeout=2)
            try:
                client.ping()  # raises BusyLoadingError while replaying the AOF
            finally:
                client.close()

        self._wait_ready(probe, timeout)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM: redis flushes the AOF and exits."""
        self._signal_and_wait(signal.SIGTERM, timeout)
