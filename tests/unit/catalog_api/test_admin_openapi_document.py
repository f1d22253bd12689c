"""The admin API's OpenAPI document describes exactly the routes the app serves, and is a valid OpenAPI 3.0
document (schemathesis loads every operation of it). The running API is tested against it end to end
(tests/e2e/test_admin_openapi.py)."""

from __future__ import annotations

from importlib.resources import files
from typing import Any, cast

import schemathesis
import yaml
from schemathesis.core.result import Err, Ok

from catalog_api.admin_api import build_admin_app

#: `GET /admin/{table}` serves these collections (and 404 for any other name).
COLLECTIONS = ("upstreams", "models", "packages", "brands", "tenants", "keys")


def document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(files("catalog_api").joinpath("admin_openapi.yaml").read_text())
    return loaded


def served_routes() -> set[tuple[str, str]]:
    app = build_admin_app(cast(Any, None), cast(Any, None), "token")
    routes = set()
    for route in app.router.routes():
        if route.method == "HEAD":
            continue
        path = route.resource.canonical if route.resource is not None else ""
        if path == "/admin/{table}":
            routes |= {(route.method, f"/admin/{name}") for name in COLLECTIONS}
        else:
            routes.add((route.method, path))
    return routes


def documented_routes() -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in document()["paths"].items() for method in item
            if method != "parameters"}


def test_the_document_describes_every_route_and_no_other() -> None:
    assert documented_routes() == served_routes()


def test_every_admin_route_requires_the_token_and_only_probes_are_open() -> None:
    doc = document()
    open_routes = {path for path, item in doc["paths"].items() for operation in item.values()
                   if isinstance(operation, dict) and operation.get("security") == []}
    assert open_routes == {"/healthz", "/metrics"}
    assert doc["security"] == [{"adminToken": []}]
    scheme = doc["components"]["securitySchemes"]["adminToken"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if path.startswith("/admin/") and method != "parameters":
                assert "401" in operation["responses"], (method, path)


def test_schemathesis_loads_every_operation() -> None:
    schema = schemathesis.openapi.from_dict(document())
    results = list(schema.get_all_operations())
    assert not [result.err() for result in results if isinstance(result, Err)]
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert {(operation.method.upper(), operation.path) for operation in operations} == documented_routes()
