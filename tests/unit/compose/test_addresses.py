"""Addresses: each service listens where the others reach it, every address names a service listening there, the
stores are the compose services, only Envoy and Prometheus are published, and credentials come from the
environment."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import yaml

from tests.unit.compose.stack import COMPOSE_FILE, LISTENS, SERVICES, environment, is_lime, role

PUBLISHED = {"envoy": ["8080:8080"], "prometheus": ["9090:9090"]}


def test_each_service_listens_where_the_others_can_reach_it() -> None:
    for name, service in SERVICES.items():
        if not is_lime(service):
            continue
        env = environment(service)
        for variable in LISTENS.get(role(name), ()):
            assert env.get(variable, "").startswith("0.0.0.0:"), f"{name}: {variable}={env.get(variable)}"


def test_every_address_names_a_service_listening_there() -> None:
    for name, service in SERVICES.items():
        for variable, value in environment(service).items():
            if not variable.endswith("_ADDR"):
                continue
            host, _, port = value.rpartition(":")
            if host in ("0.0.0.0", "127.0.0.1"):
                continue
            assert host in SERVICES, f"{name}: {variable}={value} names no service"
            target = environment(SERVICES[host]).get(variable)
            assert target == f"0.0.0.0:{port}", f"{name}: {variable}={value}, but {host} listens on {target}"


def test_the_stores_are_the_compose_services() -> None:
    for name, service in SERVICES.items():
        env = environment(service)
        for variable, store, port in (("LIME_DATABASE_URL", "postgres", 5432), ("LIME_REDIS_URL", "redis", 6379)):
            if variable in env:
                url = urlsplit(env[variable])
                assert (url.hostname, url.port) == (store, port), f"{name}: {variable}"
    database = urlsplit(environment(SERVICES["authz"])["LIME_DATABASE_URL"])
    postgres = environment(SERVICES["postgres"])
    assert (database.username, database.password, database.path.lstrip("/")) == (
        postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"], postgres["POSTGRES_DB"])


def test_only_envoy_and_prometheus_are_published() -> None:
    published = {name: service["ports"] for name, service in SERVICES.items() if service.get("ports")}
    assert published == PUBLISHED
    assert environment(SERVICES["envoy"])["LIME_PUBLIC_ADDR"].endswith(":8080")


def test_credentials_come_from_the_environment() -> None:
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    secret = re.compile(r"(KEY|TOKEN|PASSWORD|SECRET)")
    for name, service in raw["services"].items():
        for variable, value in environment(service).items():
            if secret.search(variable):
                assert value.startswith("${") and value.endswith("}"), f"{name}: {variable} is written in the file"
