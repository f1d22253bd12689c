"""SRE-owned routing through the real Envoy: failover groups, and route/cluster edits applied while it runs.

The edits are made to the rendered files Envoy watches (what `lime up` writes when an SRE saves envoy/*.yaml),
replaced atomically as any deployment must, and undone at the end of each test.
"""

from __future__ import annotations

import contextlib
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from lime.devstack.embedded import free_port
from lime.envoy.files import replace_file
from tests.e2e.conftest import UPSTREAM_SECRET_BACKUP, UPSTREAM_SECRET_FAILOVER, Gateway, TenantAccess
from tests.e2e.test_metrics import scrape, value

Resources = list[dict[str, Any]]


@pytest.fixture(scope="module")
def tenant(gateway: Gateway) -> TenantAccess:
    return gateway.new_tenant(["chat-a", "chat-failover"])


@contextlib.contextmanager
def edited(path: Path, change: Callable[[Resources], None]) -> Iterator[None]:
    original = path.read_text()
    document = yaml.safe_load(original)
    change(document["resources"])
    replace_file(path, yaml.safe_dump(document, sort_keys=False))
    try:
        yield
    finally:
        replace_file(path, original)


def cluster(resources: Resources, name: str) -> dict[str, Any]:
    return next(c for c in resources if c["name"] == name)


def route(resources: Resources, name: str) -> dict[str, Any]:
    return next(r for r in resources[0]["virtual_hosts"][0]["routes"] if r["name"] == name)


def seen_by_mock(gateway: Gateway, request_id: str) -> list[dict[str, Any]]:
    return gateway.mock_requests(request_id)


def envoy_stat(gateway: Gateway, name: str) -> int:
    with urllib.request.urlopen(f"http://{gateway.settings.envoy_admin}/stats?filter=^{name}$", timeout=5) as reply:
        text = reply.read().decode()
    return sum(int(line.split(": ")[1]) for line in text.splitlines() if line.startswith(name + ": "))


def attempt_failures(gateway: Gateway, upstream: str, reason: str) -> float:
    return value(scrape(gateway.settings.extproc_metrics), "lime_upstream_attempt_failures_total",
                 upstream=upstream, reason=reason)


def envoy_pid(gateway: Gateway) -> int:
    process = gateway.stack.services["envoy"].process
    assert process is not None
    return process.pid


def until(attempt: Callable[[], Any], accept: Callable[[Any], bool], what: str, timeout: float = 15.0) -> Any:
    """Try until ``accept`` holds: Envoy applies a replaced file within moments, not at a known instant."""
    deadline = time.monotonic() + timeout
    while True:
        result = attempt()
        if accept(result):
            return result
        assert time.monotonic() < deadline, f"{what}: not seen within {timeout}s"
        time.sleep(0.2)


def chat(gateway: Gateway, tenant: TenantAccess, model: str = "chat-failover") -> tuple[str, str]:
    raw = gateway.openai(tenant).chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "hi"}])
    assert "x-lime-upstream" not in raw.headers  # which candidate served is for Lime's metrics, not the client
    completion = raw.parse()
    assert completion.model == model
    return raw.headers["x-request-id"], completion.choices[0].message.content or ""


def test_a_failover_group_is_served_by_its_primary_with_the_catalogs_model_and_credential(
        gateway: Gateway, tenant: TenantAccess) -> None:
    request_id, _ = chat(gateway, tenant)
    [seen] = seen_by_mock(gateway, request_id)
    assert seen["model"] == "gpt-4o"
    assert seen["headers"]["authorization"] == f"Bearer {UPSTREAM_SECRET_FAILOVER}"


def test_a_primary_answering_500_fails_over_to_the_backup_with_its_own_model_and_credential(
        gateway: Gateway, tenant: TenantAccess) -> None:
    clusters = gateway.stack.envoy_config.parent / "clusters.yaml"
    pid = envoy_pid(gateway)
    errors_before = attempt_failures(gateway, "mock_primary", "500")

    # The mock obeys x-mock-status: the group's filters send it to whichever candidate the metadata says.
    with edited(clusters, candidates_answer({"candidate_mock_primary": "500", "candidate_mock_backup": "200"})):
        request_id, text = until(lambda: chat(gateway, tenant), lambda r: len(seen_by_mock(gateway, r[0])) == 2,
                                 "a request tried on both candidates")
        first, second = seen_by_mock(gateway, request_id)
        assert first["headers"]["x-mock-status"] == "500" and first["model"] == "gpt-4o"
        assert second["model"] == "gpt-4o-backup"
        assert second["headers"]["authorization"] == f"Bearer {UPSTREAM_SECRET_BACKUP}"
        assert second["headers"]["x-mock-status"] == "200" and text
        # A stream fails over the same way: nothing had reached the client when the primary answered 500.
        stream = gateway.openai(tenant).chat.completions.create(
            model="chat-failover", messages=[{"role": "user", "content": "hi"}], stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    # The primary's errors are counted under its name, the failovers on the group; Envoy never restarted.
    until(lambda: attempt_failures(gateway, "mock_primary", "500"), lambda n: n >= errors_before + 2,
          "the primary's failed attempts in the metrics")
    assert envoy_stat(gateway, "cluster.upstream_mock_failover.upstream_rq_retry_success") >= 2
    assert envoy_pid(gateway) == pid


def candidates_answer(statuses: dict[str, str]) -> Callable[[Resources], None]:
    """An edit of clusters.yaml: each candidate's attempts carry x-mock-status from its metadata (the mock obeys)."""

    def change(resources: Resources) -> None:
        for name, status in statuses.items():
            endpoint = cluster(resources, name)["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
            endpoint["metadata"]["filter_metadata"]["lime"]["status"] = status
        filters = cluster(resources, "upstream_mock_failover")["typed_extension_protocol_options"][
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]["http_filters"]
        filters[0]["typed_config"]["mutations"]["request_mutations"].append(
            {"append": {"header": {"key": "x-mock-status", "value": "%UPSTREAM_METADATA(lime:status)%"},
                        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}})

    return change


def auth_failures(gateway: Gateway, upstream: str, status: str) -> float:
    return value(scrape(gateway.settings.extproc_metrics), "lime_upstream_auth_failures_total",
                 upstream=upstream, status=status)


@pytest.mark.parametrize("refusal", ["401", "403"])
def test_a_primary_refusing_its_credential_fails_over_to_the_backup_and_is_counted(
        gateway: Gateway, tenant: TenantAccess, refusal: str) -> None:
    """The route retries 401/402/403/407 on the next candidate (routes.yaml, retriable_status_codes): it has its own
    credential. The client is served; the refusal is counted under the primary's name for the SRE's alert."""
    clusters = gateway.stack.envoy_config.parent / "clusters.yaml"
    before = auth_failures(gateway, "mock_primary", refusal)
    with edited(clusters, candidates_answer({"candidate_mock_primary": refusal, "candidate_mock_backup": "200"})):
        request_id, text = until(lambda: chat(gateway, tenant), lambda r: len(seen_by_mock(gateway, r[0])) == 2,
                                 "a request tried on both candidates")
        first, second = seen_by_mock(gateway, request_id)
        assert first["status"] == int(refusal) and first["headers"]["authorization"] == \
            f"Bearer {UPSTREAM_SECRET_FAILOVER}"
        assert second["status"] == 200 and second["headers"]["authorization"] == f"Bearer {UPSTREAM_SECRET_BACKUP}"
        assert text
    until(lambda: auth_failures(gateway, "mock_primary", refusal), lambda n: n >= before + 1,
          "the primary's refused credential in lime_upstream_auth_failures_total")


def test_a_group_whose_every_candidate_refuses_answers_502(gateway: Gateway, tenant: TenantAccess) -> None:
    clusters = gateway.stack.envoy_config.parent / "clusters.yaml"
    with edited(clusters, candidates_answer({"candidate_mock_primary": "401", "candidate_mock_backup": "401"})):
        def attempt() -> tuple[str, int, dict[str, Any]]:
            try:  # served, until Envoy has applied the edit
                return chat(gateway, tenant)[0], 200, {}
            except openai.APIStatusError as error:
                return error.response.headers["x-request-id"], error.status_code, error.response.json()

        _, status, body = until(attempt, lambda r: r[1] != 200 and len(seen_by_mock(gateway, r[0])) == 2,
                                "a request refused by both candidates")
        assert status == 502 and body["error"]["code"] == "upstream_auth_failed"


def test_a_primary_that_is_down_fails_over_to_the_backup(gateway: Gateway, tenant: TenantAccess) -> None:
    clusters = gateway.stack.envoy_config.parent / "clusters.yaml"
    refused_before = attempt_failures(gateway, "mock_primary", "connect_failure")
    health_failures_before = envoy_stat(gateway, "cluster.candidate_mock_primary.health_check.failure")

    def primary_down(resources: Resources) -> None:
        endpoint = cluster(resources, "candidate_mock_primary")["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
        endpoint["endpoint"]["address"]["socket_address"]["port_value"] = free_port()  # nothing listens there

    with edited(clusters, primary_down):
        request_id, _ = until(lambda: chat(gateway, tenant),
                              lambda r: [s["model"] for s in seen_by_mock(gateway, r[0])] == ["gpt-4o-backup"],
                              "a request served by the backup alone")
        [seen] = seen_by_mock(gateway, request_id)
        assert seen["headers"]["authorization"] == f"Bearer {UPSTREAM_SECRET_BACKUP}"
    # A candidate found down is counted where it was found: by its health check (Envoy sends nothing to a host
    # that never passed one), or by the attempt that was refused, if a request got there first.
    until(lambda: (envoy_stat(gateway, "cluster.candidate_mock_primary.health_check.failure") > health_failures_before
                   or attempt_failures(gateway, "mock_primary", "connect_failure") > refused_before),
          bool, "the primary's failure in Envoy's stats or Lime's metrics")


def test_an_edited_route_applies_without_a_restart(gateway: Gateway, tenant: TenantAccess) -> None:
    routes = gateway.stack.envoy_config.parent / "routes.yaml"
    pid = envoy_pid(gateway)

    def tag_mock_route(resources: Resources) -> None:
        route(resources, "upstream_mock")["request_headers_to_add"] = [
            {"header": {"key": "x-route-edition", "value": "2"}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]

    def edition() -> str | None:
        request_id, _ = chat(gateway, tenant, "chat-a")
        [seen] = seen_by_mock(gateway, request_id)
        tag: str | None = seen["headers"].get("x-route-edition")
        return tag

    assert edition() is None
    with edited(routes, tag_mock_route):
        until(edition, lambda tag: tag == "2", "the edited route")
    until(edition, lambda tag: tag is None, "the route as it was")
    assert envoy_pid(gateway) == pid


def test_a_route_to_a_cluster_that_does_not_exist_fails_in_the_clients_protocol(
        gateway: Gateway, tenant: TenantAccess) -> None:
    routes = gateway.stack.envoy_config.parent / "routes.yaml"

    def misroute(resources: Resources) -> None:
        route(resources, "upstream_mock")["route"]["cluster"] = "upstream_nowhere"

    with edited(routes, misroute):
        error = until(lambda: _error_of(gateway, tenant), lambda e: e is not None, "the misrouted request failing")
        assert error.status_code == 503 and error.code == "upstream_unavailable"


def _error_of(gateway: Gateway, tenant: TenantAccess) -> openai.APIStatusError | None:
    try:
        chat(gateway, tenant, "chat-a")
    except openai.APIStatusError as error:
        return error
    return None
