"""Process settings, read once from the environment.

Every Lime process builds one frozen :class:`Settings` at start-up with :meth:`Settings.from_env` and passes
it down; nothing else in the code base reads ``os.environ``. A badly typed variable fails at start-up with the
variable's name. Secrets (upstream credentials, the admin token) have no defaults: they come from environment
variables or from files in ``LIME_SECRETS_DIR``.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

__all__ = ["CATALOG_SECRET_HEADER", "Address", "Settings", "SettingsError", "child_environment",
           "is_loopback", "upstream_env_name"]

UPSTREAM_KEY_PREFIX = "LIME_UPSTREAM_KEY_"
# The SRE-edited Envoy config in the checkout this package runs from (the project installs itself editable).
DEFAULT_ENVOY_CONFIG = Path(__file__).resolve().parents[1] / "envoy" / "envoy.yaml"
#: The header in which Envoy presents ``catalog_secret`` to catalog_api on the routes it sends there (rendered in by
#: lime/envoy/render.py); Envoy strips it from client requests, like Lime's other internal headers.
CATALOG_SECRET_HEADER = "x-lime-catalog-secret"  # noqa: S105 - a header's name, not a secret


class SettingsError(ValueError):
    """A variable is missing or cannot be cast; the message names it."""


@dataclass(frozen=True)
class Address:
    """A TCP ``HOST:PORT``, or a Unix socket ``unix:/path`` (the gRPC services beside Envoy in one pod)."""

    host: str
    port: int
    #: The socket's path when this is a Unix socket address; then ``host`` and ``port`` are unused.
    path: str | None = None

    @classmethod
    def parse(cls, text: str, *, name: str) -> Address:
        if text.startswith("unix:"):
            path = text.removeprefix("unix:")
            if not path.startswith("/"):
                raise SettingsError(f"{name} must look like unix:/absolute/path, got {text!r}")
            return cls("", 0, path)
        host, sep, port = text.rpartition(":")
        if not sep or not port.isdigit() or not host:
            raise SettingsError(f"{name} must look like HOST:PORT or unix:/path, got {text!r}")
        return cls(host.strip("[]"), int(port))

    @property
    def is_unix(self) -> bool:
        return self.path is not None

    def nth(self, index: int) -> Address:
        """Where process ``index`` of a pool listens: this address for the first; then ``<name>-<index><suffix>``
        beside a Unix socket, or the port plus :data:`PROCESS_PORT_STRIDE` times ``index`` for TCP (a stride of
        100 stays clear of Lime's other default ports, 9001-9012 and 9901-9902)."""
        if index == 0:
            return self
        if self.path is not None:
            folder, _, name = self.path.rpartition("/")
            stem, dot, suffix = name.partition(".")
            return Address("", 0, f"{folder}/{stem}-{index}{dot}{suffix}")
        return Address(self.host, self.port + PROCESS_PORT_STRIDE * index)

    def __str__(self) -> str:
        return f"unix:{self.path}" if self.path is not None else f"{self.host}:{self.port}"


#: Between the TCP ports of two processes of one pool (see :meth:`Address.nth`).
PROCESS_PORT_STRIDE = 100


def is_loopback(address: Address) -> bool:
    """A Unix socket, or a TCP address only this machine (this pod, this container) can reach."""
    if address.is_unix:
        return True
    if address.host == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.host).is_loopback
    except ValueError:
        return False  # a name that resolves elsewhere, or 0.0.0.0's kin


def _credential_slot(upstream_id: str) -> str:
    """Upstream ids may hold `-` and `_`, variable names only `_`: both sides meet in this normal form."""
    return re.sub(r"[^A-Za-z0-9]", "_", upstream_id).upper()


def upstream_env_name(upstream_id: str) -> str:
    """The environment variable that holds an upstream's credential: ``new-api`` -> ``LIME_UPSTREAM_KEY_NEW_API``."""
    return UPSTREAM_KEY_PREFIX + _credential_slot(upstream_id)


def child_environment(overrides: Mapping[str, str]) -> dict[str, str]:
    """This process's environment with ``overrides``, for the processes Lime starts (they need PATH and the rest)."""
    return {**os.environ, **overrides}


#: Every listening address, by its ``LIME_<NAME>_ADDR`` variable: tests give each one a free port.
ADDRESS_NAMES = ("PUBLIC", "ENVOY_ADMIN", "ENVOY_STATS", "AUTHZ", "EXTPROC", "CATALOG", "ADMIN", "SETTLER",
                 "MOCK_UPSTREAM", "AUTHZ_METRICS", "EXTPROC_METRICS")


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None
    redis_url: str | None = None
    state_dir: Path = Path(".lime")
    public: Address = Address("127.0.0.1", 8080)
    #: Envoy's admin interface: loopback or a Unix socket only (see from_env), since whoever reaches it can stop
    #: Envoy (/quitquitquit), change its runtime or read its whole config.
    envoy_admin: Address = Address("127.0.0.1", 9901)
    #: Envoy's listener that serves only ``/stats/prometheus`` (proxied to the admin address): what Prometheus
    #: scrapes, and the only admin path reachable from the network.
    envoy_stats: Address = Address("127.0.0.1", 9902)
    authz: Address = Address("127.0.0.1", 9001)
    extproc: Address = Address("127.0.0.1", 9002)
    catalog: Address = Address("127.0.0.1", 9003)
    admin: Address = Address("127.0.0.1", 9004)
    settler: Address = Address("127.0.0.1", 9005)
    #: Prometheus ``/metrics`` of the two gRPC services (catalog_api serves it on the admin port, the settler on
    #: its own address).
    authz_metrics: Address = Address("127.0.0.1", 9011)
    extproc_metrics: Address = Address("127.0.0.1", 9012)
    mock_upstream: Address = Address("127.0.0.1", 9100)
    envoy_config: Path = DEFAULT_ENVOY_CONFIG
    admin_token: str | None = field(default=None, repr=False)
    #: Shared by Envoy and catalog_api: Envoy presents it (CATALOG_SECRET_HEADER) on every request it routes to
    #: catalog_api, which trusts the verified-tenant header only beside it. No default: catalog_api will not start
    #: without one, and `lime up` and the tests generate theirs.
    catalog_secret: str | None = field(default=None, repr=False)
    # Credentials by the upstream's normalised id (see upstream_credential). repr=False keeps them out of
    # tracebacks and debug prints.
    upstream_keys: Mapping[str, str] = field(default_factory=dict, repr=False)
    key_cache_seconds: int = 60
    catalog_poll_seconds: float = 5.0
    #: A reservation nobody has vouched for this long is reaped (released, nothing charged); extproc vouches for
    #: the requests it serves every third of it, so only requests whose extproc is gone are reaped.
    reservation_ttl_seconds: int = 60
    #: On SIGTERM, how long requests in flight (LLM streams) may take to finish before a process stops anyway.
    drain_seconds: float = 30.0
    #: Processes of authz and of extproc each (one per core is the production shape; docs/deploy.md): process i
    #: listens on ``authz.nth(i)`` / ``extproc.nth(i)`` and Envoy balances requests over them.
    processes: int = 1
    #: How many processes the pool this one belongs to has (the pool sets it for its children, each of which is
    #: started with ``processes`` 1); above 1, extproc relays Envoy's cut reports between them (extproc/cut_relay.py).
    pool_size: int = 1
    #: Points one US dollar buys: what ``lime model import-prices`` converts LiteLLM's USD prices at (its
    #: ``--points-per-usd`` overrides it). A Decimal, never a float: a price is rounded once, up, from the exact rate.
    points_per_usd: Decimal = Decimal(1)
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        reader = _Reader(env)
        secrets_dir = reader.path("LIME_SECRETS_DIR", None)
        return cls(
            database_url=env.get("LIME_DATABASE_URL") or None,
            redis_url=env.get("LIME_REDIS_URL") or None,
            state_dir=reader.path("LIME_STATE_DIR", Path(".lime")) or Path(".lime"),
            public=reader.address("LIME_PUBLIC_ADDR", cls.public),
            envoy_admin=reader.loopback_address("LIME_ENVOY_ADMIN_ADDR", cls.envoy_admin),
            envoy_stats=reader.address("LIME_ENVOY_STATS_ADDR", cls.envoy_stats),
            authz=reader.address("LIME_AUTHZ_ADDR", cls.authz),
            extproc=reader.address("LIME_EXTPROC_ADDR", cls.extproc),
            catalog=reader.address("LIME_CATALOG_ADDR", cls.catalog),
            admin=reader.address("LIME_ADMIN_ADDR", cls.admin),
            settler=reader.address("LIME_SETTLER_ADDR", cls.settler),
            authz_metrics=reader.address("LIME_AUTHZ_METRICS_ADDR", cls.authz_metrics),
            extproc_metrics=reader.address("LIME_EXTPROC_METRICS_ADDR", cls.extproc_metrics),
            mock_upstream=reader.address("LIME_MOCK_UPSTREAM_ADDR", cls.mock_upstream),
            envoy_config=reader.path("LIME_ENVOY_CONFIG", cls.envoy_config) or cls.envoy_config,
            admin_token=reader.secret("LIME_ADMIN_TOKEN", secrets_dir, "admin_token"),
            catalog_secret=reader.secret("LIME_CATALOG_SECRET", secrets_dir, "catalog_secret"),
            upstream_keys=_upstream_keys(env, secrets_dir),
            key_cache_seconds=reader.integer("LIME_KEY_CACHE_SECONDS", cls.key_cache_seconds),
            catalog_poll_seconds=reader.number("LIME_CATALOG_POLL_SECONDS", cls.catalog_poll_seconds),
            reservation_ttl_seconds=reader.integer("LIME_RESERVATION_TTL_SECONDS", cls.reservation_ttl_seconds),
            drain_seconds=reader.number("LIME_DRAIN_SECONDS", cls.drain_seconds),
            processes=reader.count("LIME_PROCESSES", cls.processes),
            pool_size=reader.count("LIME_POOL_SIZE", cls.pool_size),
            points_per_usd=reader.rate("LIME_POINTS_PER_USD", cls.points_per_usd),
            log_level=env.get("LIME_LOG_LEVEL", cls.log_level).upper(),
        )

    def pool(self, address: Address) -> tuple[Address, ...]:
        """The addresses of the processes that serve at ``address`` (authz's or extproc's)."""
        return tuple(address.nth(i) for i in range(self.processes))

    def upstream_credential(self, upstream_id: str) -> str | None:
        return self.upstream_keys.get(_credential_slot(upstream_id))

    def require_database_url(self) -> str:
        if not self.database_url:
            raise SettingsError("LIME_DATABASE_URL is not set")
        return self.database_url

    def require_redis_url(self) -> str:
        if not self.redis_url:
            raise SettingsError("LIME_REDIS_URL is not set")
        return self.redis_url


def _upstream_keys(env: Mapping[str, str], secrets_dir: Path | None) -> dict[str, str]:
    """Credentials: files ``$LIME_SECRETS_DIR/upstream_<id>``, then ``LIME_UPSTREAM_KEY_<ID>`` variables."""
    keys: dict[str, str] = {}
    if secrets_dir is not None and secrets_dir.is_dir():
        for path in sorted(secrets_dir.glob("upstream_*")):
            keys[_credential_slot(path.name.removeprefix("upstream_"))] = path.read_text().strip()
    for name, value in env.items():
        if name.startswith(UPSTREAM_KEY_PREFIX) and value:
            keys[_credential_slot(name.removeprefix(UPSTREAM_KEY_PREFIX))] = value
    return keys


@dataclass(frozen=True)
class _Reader:
    env: Mapping[str, str]

    def address(self, name: str, default: Address) -> Address:
        text = self.env.get(name)
        return Address.parse(text, name=name) if text else default

    def loopback_address(self, name: str, default: Address) -> Address:
        address = self.address(name, default)
        if not is_loopback(address):
            raise SettingsError(f"{name} must be a loopback address (127.0.0.1:PORT) or unix:/path, got "
                                f"{address}: whoever reaches Envoy's admin can stop it; Prometheus scrapes the "
                                "stats listener (LIME_ENVOY_STATS_ADDR) instead")
        return address

    def path(self, name: str, default: Path | None) -> Path | None:
        text = self.env.get(name)
        return Path(text) if text else default

    def integer(self, name: str, default: int) -> int:
        text = self.env.get(name)
        if not text:
            return default
        try:
            return int(text)
        except ValueError:
            raise SettingsError(f"{name} must be an integer, got {text!r}") from None

    def count(self, name: str, default: int) -> int:
        value = self.integer(name, default)
        if value < 1:
            raise SettingsError(f"{name} must be 1 or more, got {value}")
        return value

    def number(self, name: str, default: float) -> float:
        text = self.env.get(name)
        if not text:
            return default
        try:
            return float(text)
        except ValueError:
            raise SettingsError(f"{name} must be a number, got {text!r}") from None

    def rate(self, name: str, default: Decimal) -> Decimal:
        text = self.env.get(name)
        if not text:
            return default
        try:
            value = Decimal(text.strip())
        except InvalidOperation:
            value = Decimal(0)
        if not value.is_finite() or value <= 0:
            raise SettingsError(f"{name} must be a number above 0, got {text!r}")
        return value

    def secret(self, name: str, secrets_dir: Path | None, file_name: str) -> str | None:
        if secrets_dir is not None and (secrets_dir / file_name).is_file():
            return (secrets_dir / file_name).read_text().strip() or None
        return self.env.get(name) or None
