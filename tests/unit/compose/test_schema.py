"""The file as Compose reads it: interpolated (it will not start without an admin token), valid against the
Compose specification's JSON schema (tests/schemas/compose-spec.json, see tests/schemas/README.md), the whole
stack there, Redis keeping an append-only file on a volume."""

from __future__ import annotations

import json

import jsonschema
import pytest

from tests.deploy_checks import ROOT
from tests.unit.compose.stack import COMPOSE, RUN_ENV, SERVICES, InterpolationError, environment, is_lime, load, role

SCHEMA = json.loads((ROOT / "tests" / "schemas" / "compose-spec.json").read_text())
FULL_STACK = {"envoy", "authz", "extproc", "catalog-api", "settler", "postgres", "redis", "prometheus",
              "mock-upstream", "migrate"}


def test_the_file_matches_the_compose_specification() -> None:
    validator = jsonschema.Draft202012Validator(SCHEMA)
    errors = [f"{'/'.join(map(str, error.absolute_path))}: {error.message}" for error in validator.iter_errors(COMPOSE)]
    assert errors == []


def test_the_schema_catches_a_misspelt_key() -> None:
    broken = load()
    broken["services"]["authz"]["depends-on"] = broken["services"]["authz"].pop("depends_on")
    assert not jsonschema.Draft202012Validator(SCHEMA).is_valid(broken)


def test_it_will_not_start_without_an_admin_token() -> None:
    with pytest.raises(InterpolationError, match="LIME_ADMIN_TOKEN"):
        load({})
    assert environment(SERVICES["catalog-api"])["LIME_ADMIN_TOKEN"] == RUN_ENV["LIME_ADMIN_TOKEN"]


def test_the_whole_stack_is_there() -> None:
    assert set(SERVICES) >= FULL_STACK
    roles = {role(name) for name, service in SERVICES.items() if is_lime(service)}
    assert roles >= {"migrate", "authz", "extproc", "catalog-api", "settler", "mock-upstream", "envoy"}


def test_redis_keeps_an_append_only_file_on_a_volume() -> None:
    command = SERVICES["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert any(mount.endswith(":/data") and mount.split(":")[0] in COMPOSE["volumes"]
               for mount in SERVICES["redis"]["volumes"])
