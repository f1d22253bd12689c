"""The real `lime` command, run as an operator runs it (a subprocess with LIME_* in the environment), against a
database of this module's own and the suite's Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from lime.devstack.embedded import EmbeddedRedis, free_port
from lime.directory import key_cache_name
from lime.keys import KEY_PREFIX, hash_key
from lime.store.migrate import available_migrations
from tests.integration.conftest import MakeDatabase, uid

Lime = Callable[..., subprocess.CompletedProcess[str]]
ALL_MIGRATIONS = [f"{m.version:04d}_{m.name}" for m in available_migrations()]


def _runner(env: dict[str, str], cwd: Path) -> Lime:
    def lime(*args: str, env_overrides: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "lime.cli", *args], env={**env, **(env_overrides or {})},
                              cwd=cwd, capture_output=True, text=True, timeout=60, check=False)

    return lime


def _env(database_url: str, redis_url: str, state_dir: Path) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("LIME_")}
    env.update({"LIME_DATABASE_URL": database_url, "LIME_REDIS_URL": redis_url, "LIME_STATE_DIR": str(state_dir),
                "LIME_LOG_LEVEL": "WARNING"})
    return env


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return result


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(ok(result).stdout)


def refused(result: subprocess.CompletedProcess[str], message: str) -> None:
    """An error an operator can act on: exit 2, a one-line `lime: ...` message, no traceback."""
    assert result.returncode == 2, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def lime(fresh_database: str, redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Lime:
    """`lime` on this module's database, migrated by `lime migrate` itself."""
    state = tmp_path_factory.mktemp("cli-state")
    run = _runner(_env(fresh_database, redis_server.url, state), state)
    ok(run("migrate"))
    return run


@pytest.fixture(scope="module")
def catalog(lime: Lime) -> dict[str, str]:
    """An upstream, a model and a package, added through the CLI."""
    ids = {"upstream": f"up_{uid('x').replace('-', '_')}", "model": uid("gpt"), "package": uid("pro")}
    ok(lime("upstream", "add", ids["upstream"], "--protocol", "openai"))
    ok(lime("model", "add", ids["model"], "--upstream", ids["upstream"], "--upstream-model", "gpt-4o-2024-08-06"))
    ok(lime("package", "create", ids["package"], "--models", ids["model"]))
    return ids


def _db_rows(url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchall()


# --- migrate --------------------------------------------------------------------------------------------------


def test_migrate_reports_what_it_applied(make_database: MakeDatabase, redis_server: EmbeddedRedis,
                                         tmp_path: Path) -> None:
    url = make_database()
    lime = _runner(_env(url, redis_server.url, tmp_path), tmp_path)

    assert as_json(lime("migrate", "--json")) == {"applied": ALL_MIGRATIONS}
    assert as_json(lime("migrate", "--json")) == {"applied": []}
    assert "schema is up to date" in ok(lime("migrate")).stdout
    assert [v for (v,) in _db_rows(url, "SELECT version FROM schema_migrations ORDER BY 1")] == [
        m.version for m in available_migrations()]


# --- the catalog and keys -------------------------------------------------------------------------------------


def test_catalog_commands_write_the_catalog(lime: Lime, fresh_database: str) -> None:
    upstream, model, package, brand, tenant = (f"up_{uid('y').replace('-', '_')}", uid("m"), uid("p"), uid("b"),
                                               uid("t"))

    added = ok(lime("upstream", "add", upstream, "--protocol", "anthropic", "--description", "Claude"))
    assert f"LIME_UPSTREAM_KEY_{upstream.upper()}" in added.stdout  # tells the operator where the credential goes
    assert as_json(lime("model", "add", model, "--upstream", upstream, "--upstream-model", "claude-sonnet-4-5",
                        "--input-price", "3000000", "--output-price", "15000000", "--json")) == {"id": model}
    assert as_json(lime("package", "create", package, "--models", f"{model}, {model}", "--json"))["id"] == package
    assert as_json(lime("brand", "create", brand, "--models", model, "--json")) == {"id": brand, "models": [model]}
    assert as_json(lime("tenant", "create", tenant, "--name", "Acme", "--package", package, "--brand", brand,
                        "--json")) == {"id": tenant, "package": package, "brand": brand}

    assert _db_rows(fresh_database, "SELECT protocol, description FROM upstreams WHERE id = %s", upstream) == [
        ("anthropic", "Claude")]
    assert _db_rows(fresh_database, "SELECT upstream_id, upstream_model, kind, input_price, output_price"
                    " FROM models WHERE id = %s", model) == [(upstream, "claude-sonnet-4-5", "chat", 3000000, 15000000)]
    assert _db_rows(fresh_database, "SELECT model_id FROM package_models WHERE package_id = %s", package) == [(model,)]
    assert _db_rows(fresh_database, "SELECT name, package_id, brand_id, status FROM tenants WHERE id = %s",
                    tenant) == [("Acme", package, brand, "active")]


def test_a_key_is_printed_once_and_only_its_hash_is_kept(lime: Lime, catalog: dict[str, str],
                                                         fresh_database: str, redis_server: EmbeddedRedis) -> None:
    tenant = uid("acme")
    ok(lime("tenant", "create", tenant, "--package", catalog["package"]))

    created = as_json(lime("key", "create", tenant, "--name", "ci", "--json"))
    secret, key_id = created["key"], created["id"]
    assert created["tenant"] == tenant
    assert secret.startswith(KEY_PREFIX)
    [(stored_hash, status)] = _db_rows(fresh_database, "SELECT key_hash, status FROM api_keys WHERE id = %s", key_id)
    assert stored_hash == hash_key(secret)
    assert status == "active"
    assert _db_rows(fresh_database, "SELECT 1 FROM api_keys k WHERE strpos(row_to_json(k)::text, %s) > 0",
                    secret) == []

    listing = ok(lime("key", "list", "--tenant", tenant, "--json")).stdout
    assert secret not in listing
    assert stored_hash not in listing
    [row] = json.loads(listing)
    assert (row["id"], row["tenant_id"], row["name"], row["status"]) == (key_id, tenant, "ci", "active")
    assert secret.startswith(row["display_prefix"])
    assert secret not in ok(lime("key", "list")).stdout

    # Revoking replaces the key's cached copy, so the gateway refuses it on the next request.
    cache = redis.Redis.from_url(redis_server.url)
    try:
        cache.set(key_cache_name(stored_hash), "cached", ex=60)
        assert as_json(lime("key", "revoke", key_id, "--json")) == {"id": key_id, "status": "revoked"}
        assert cache.get(key_cache_name(stored_hash)) != b"cached"
    finally:
        cache.close()
    [row] = as_json(lime("key", "list", "--tenant", tenant, "--json"))
    assert row["status"] == "revoked"
    assert row["revoked_at"] is not None


def test_the_text_output_of_key_create_shows_the_key(lime: Lime, catalog: dict[str, str],
                                                     fresh_database: str) -> None:
    tenant = uid("text")
    ok(lime("tenant", "create", tenant, "--package", catalog["package"]))

    out = ok(lime("key", "create", tenant)).stdout

    secret = next(word for word in out.split() if word.startswith(KEY_PREFIX))
    assert _db_rows(fresh_database, "SELECT tenant_id FROM api_keys WHERE key_hash = %s", hash_key(secret)) == [
        (tenant,)]
    assert "shown once" in out


# --- errors an operator can act on ---------------------------------------------------------------------------


def test_a_duplicate_tenant_is_refused(lime: Lime, catalog: dict[str, str]) -> None:
    tenant = uid("dup")
    ok(lime("tenant", "create", tenant, "--package", catalog["package"]))
    refused(lime("tenant", "create", tenant, "--package", catalog["package"]), "already exists")


def test_unknown_references_are_refused(lime: Lime, catalog: dict[str, str]) -> None:
    refused(lime("tenant", "create", uid("t"), "--package", "no-such-package"), "does not exist")
    refused(lime("model", "add", uid("m"), "--upstream", "no-such-upstream"), "does not exist")
    refused(lime("package", "create", uid("p"), "--models", "no-such-model"), "does not exist")
    refused(lime("key", "create", "no-such-tenant"), "does not exist")
    refused(lime("key", "revoke", "key_0000000000000000"), "does not exist")


def test_bad_arguments_are_refused_by_the_parser(lime: Lime, catalog: dict[str, str]) -> None:
    refused(lime("upstream", "add", uid("u"), "--protocol", "grpc"), "invalid choice")
    refused(lime("model", "add", uid("m"), "--upstream", catalog["upstream"], "--kind", "image"), "invalid choice")
    refused(lime("model", "add", uid("m"), "--upstream", catalog["upstream"], "--input-price", "cheap"),
            "invalid int value")


def test_an_invalid_upstream_id_is_refused(lime: Lime) -> None:
    refused(lime("upstream", "add", "Has Spaces", "--protocol", "openai"), "is not valid")


@pytest.mark.parametrize("command", [["tenant", "create", "nobody"], ["migrate"]])
def test_an_unreachable_database_is_a_clear_error(command: list[str], lime: Lime) -> None:
    closed = f"postgresql://postgres@127.0.0.1:{free_port()}/lime"
    refused(lime(*command, env_overrides={"LIME_DATABASE_URL": closed}), "lime: ")


def test_revoking_while_redis_is_unreachable_is_a_clear_error(lime: Lime, catalog: dict[str, str]) -> None:
    tenant = uid("norediss")
    ok(lime("tenant", "create", tenant, "--package", catalog["package"]))
    key_id = as_json(lime("key", "create", tenant, "--json"))["id"]

    result = lime("key", "revoke", key_id, env_overrides={"LIME_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})

    refused(result, "NOT revoked")
    # All or nothing: the database was not left saying "revoked" while the cache still says "active".
    [row] = as_json(lime("key", "list", "--tenant", tenant, "--json"))
    assert row["status"] == "active"
