"""``lime envoy check``: the shipped config passes; each broken invariant is reported with a useful message."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from lime.envoy.check import Problem, check, validate_with_envoy
from lime.envoy.files import fold, read_config_set
from lime.money.grant import INTERNAL_HEADERS

SHIPPED = Path(__file__).parents[3] / "envoy" / "envoy.yaml"
Config = dict[str, Any]


def shipped() -> Config:
    """The shipped set (bootstrap, routes.yaml, clusters.yaml) as one static bootstrap, ready to break."""
    return fold(read_config_set(SHIPPED))


def _hcm(config: Config) -> Config:
    listener = next(x for x in config["static_resources"]["listeners"] if x["name"] == "public")
    typed: Config = listener["filter_chains"][0]["filters"][0]["typed_config"]
    return typed


def _filter(config: Config, name: str) -> Config:
    typed: Config = next(f for f in _hcm(config)["http_filters"] if f["name"] == name)["typed_config"]
    return typed


def _route(config: Config, name: str) -> Config:
    routes = _hcm(config)["route_config"]["virtual_hosts"][0]["routes"]
    found: Config = next(r for r in routes if r["name"] == name)
    return found


def _problems(tmp_path: Path, mutate: Callable[[Config], None], upstreams: tuple[str, ...] = ("mock",),
              ) -> list[Problem]:
    config = shipped()
    mutate(config)
    path = tmp_path / "envoy.yaml"
    path.write_text(yaml.safe_dump(config))
    return check(path, upstreams, run_envoy=False).problems


def _one(problems: list[Problem], *words: str) -> Problem:
    """The single problem reported, checked for the words a reader needs to fix it."""
    assert len(problems) == 1, problems
    for word in words:
        assert word in str(problems[0]), (word, problems[0])
    return problems[0]


def test_shipped_config_passes_including_envoy_validate() -> None:
    report = check(SHIPPED, ["mock"])
    assert report.problems == []
    assert report.ok
    assert "OK" in report.envoy_output


def test_ext_proc_before_ext_authz(tmp_path: Path) -> None:
    def swap(config: Config) -> None:
        filters = _hcm(config)["http_filters"]
        names = [f["name"] for f in filters]
        authz, proc = names.index("envoy.filters.http.ext_authz"), names.index("envoy.filters.http.ext_proc")
        filters.insert(proc, filters.pop(authz))  # just after ext_proc

    _one(_problems(tmp_path, swap), "envoy.filters.http.ext_proc runs before envoy.filters.http.ext_authz",
         "move envoy.filters.http.ext_authz above")


def test_non_streamed_answers_need_the_mode_override_and_their_header_filter(tmp_path: Path) -> None:
    _one(_problems(tmp_path, lambda c: _filter(c, "envoy.filters.http.ext_proc").update(allow_mode_override=False)),
         "allow_mode_override must be true", "reach the client unread")

    def drop(config: Config) -> None:
        hcm = _hcm(config)
        hcm["http_filters"] = [f for f in hcm["http_filters"] if f["name"] != "lime.answer_headers"]

    _one(_problems(tmp_path, drop), "lime.answer_headers must come before", "keeps the upstream's headers")


def test_streamed_answers_need_their_byte_filter_before_ext_proc(tmp_path: Path) -> None:
    def drop(config: Config) -> None:
        hcm = _hcm(config)
        hcm["http_filters"] = [f for f in hcm["http_filters"] if f["name"] != "lime.stream_bytes"]

    def after_ext_proc(config: Config) -> None:
        filters = _hcm(config)["http_filters"]
        names = [f["name"] for f in filters]
        moved = filters.pop(names.index("lime.stream_bytes"))
        filters.insert(names.index("envoy.filters.http.ext_proc"), moved)  # just after ext_proc

    for breakage in (drop, after_ext_proc):
        _one(_problems(tmp_path, breakage), "lime.stream_bytes must come before", "keeps the upstream's model id")


def _tap(config: Config) -> Config:
    tap: Config = _filter(config, "lime.stream_tap")["extension_config"]["typed_config"]
    return tap


@pytest.mark.parametrize(("breakage", "words"), [
    (lambda c: _hcm(c).update(http_filters=[f for f in _hcm(c)["http_filters"] if f["name"] != "lime.stream_tap"]),
     ("lime.stream_tap must come after", "the reaper settles it")),
    (lambda c: _tap(c).update(observability_mode=False), ("observability_mode: true", "without the chunk waiting")),
    (lambda c: _tap(c).update(deferred_close_timeout="1s"), ("deferred_close_timeout must be at least", "backlog")),
    (lambda c: _tap(c)["metadata_options"]["forwarding_namespaces"].update(untyped=["envoy.filters.http.ext_authz"]),
     ("forwarding_namespaces", "extproc's word")),
    (lambda c: _filter(c, "lime.stream_tap").pop("xds_matcher"), ("ExtensionWithMatcher", "reads every answer")),
])
def test_streams_need_their_observing_tap(tmp_path: Path, breakage: Callable[[Config], object],
                                          words: tuple[str, str]) -> None:
    def mutate(config: Config) -> None:
        breakage(config)

    _one(_problems(tmp_path, mutate), *words)


@pytest.mark.parametrize("name", ["envoy.filters.http.ext_authz", "envoy.filters.http.ext_proc"])
def test_failure_mode_allow(tmp_path: Path, name: str) -> None:
    problem = _one(_problems(tmp_path, lambda c: _filter(c, name).update(failure_mode_allow=True)),
                   "failure_mode_allow is true", "set failure_mode_allow: false")
    assert problem.where == f"http_filters[{name}]"


def test_internal_header_not_stripped(tmp_path: Path) -> None:
    def keep_upstream_header(config: Config) -> None:
        mutations = _filter(config, "envoy.filters.http.header_mutation")["mutations"]
        mutations["request_mutations"] = [m for m in mutations["request_mutations"] if m["remove"] != "x-lime-upstream"]

    _one(_problems(tmp_path, keep_upstream_header), "x-lime-upstream is not stripped", "- remove: x-lime-upstream")


def test_strip_after_ext_authz_does_not_count(tmp_path: Path) -> None:
    def move_strip_last(config: Config) -> None:
        filters = _hcm(config)["http_filters"]
        filters.insert(3, filters.pop(0))

    problems = _problems(tmp_path, move_strip_last)
    assert any("runs before envoy.filters.http.header_mutation" in p.message for p in problems)
    # Lime's internal headers and Envoy's proof to catalog_api.
    assert sum("is not stripped" in p.message for p in problems) == len(INTERNAL_HEADERS) + 1


def test_the_catalog_secret_header_not_stripped(tmp_path: Path) -> None:
    def keep_it(config: Config) -> None:
        mutations = _filter(config, "envoy.filters.http.header_mutation")["mutations"]
        mutations["request_mutations"] = [m for m in mutations["request_mutations"]
                                          if m["remove"] != "x-lime-catalog-secret"]

    _one(_problems(tmp_path, keep_it), "x-lime-catalog-secret is not stripped")


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "::", "envoy"])
def test_admin_on_the_network(tmp_path: Path, host: str) -> None:
    def expose(config: Config) -> None:
        config["admin"]["address"]["socket_address"]["address"] = host

    problem = _one(_problems(tmp_path, expose), "reachable from the network", "/quitquitquit", "127.0.0.1")
    assert problem.where == "admin.address"


@pytest.mark.parametrize("address", [{"socket_address": {"address": "127.0.0.1", "port_value": 1}},
                                     {"socket_address": {"address": "::1", "port_value": 1}},
                                     {"pipe": {"path": "/run/envoy-admin.sock"}}])
def test_admin_on_loopback_or_a_pipe(tmp_path: Path, address: Config) -> None:
    assert _problems(tmp_path, lambda config: config["admin"].update(address=address)) == []


def test_upstream_without_cluster_or_route(tmp_path: Path) -> None:
    problems = _problems(tmp_path, lambda c: None, upstreams=("mock", "openai"))
    assert len(problems) == 2, problems
    cluster, route = problems
    assert cluster.where == "clusters[upstream_openai]" and "add a cluster named upstream_openai" in cluster.message
    assert "has no route" in route.message
    assert "{name: x-lime-upstream, string_match: {exact: openai}}" in route.message
    assert "cluster: upstream_openai, timeout: 0s" in route.message


def test_upstream_route_without_timeout(tmp_path: Path) -> None:
    problem = _one(_problems(tmp_path, lambda c: _route(c, "upstream_mock")["route"].pop("timeout")),
                   "timeout is not set", "15 s", "set timeout: 0s")
    assert problem.where == "virtual_hosts[lime].routes[upstream_mock]"


def test_upstream_route_with_short_timeout(tmp_path: Path) -> None:
    _one(_problems(tmp_path, lambda c: _route(c, "upstream_mock")["route"].update(timeout="60s")), "timeout is 60 s")


def test_message_timeout_too_short(tmp_path: Path) -> None:
    _one(_problems(tmp_path, lambda c: _filter(c, "envoy.filters.http.ext_proc").update(message_timeout="0.2s")),
         "message_timeout is 0.2 s")


def test_message_timeout_missing(tmp_path: Path) -> None:
    _one(_problems(tmp_path, lambda c: _filter(c, "envoy.filters.http.ext_proc").pop("message_timeout")),
         "message_timeout is not set", "200 ms", "set message_timeout: 2s")


def test_unknown_field_fails_the_typed_load(tmp_path: Path) -> None:
    def typo(config: Config) -> None:
        ext_authz = _filter(config, "envoy.filters.http.ext_authz")
        ext_authz["failure_mode_alow"] = ext_authz.pop("failure_mode_allow")

    problem = _one(_problems(tmp_path, typo), "unknown field 'failure_mode_alow' in ExtAuthz",
                   "Did you mean 'failure_mode_allow'?")
    assert problem.where == ("static_resources.listeners[public].filter_chains[0].filters"
                             "[envoy.filters.network.http_connection_manager].typed_config"
                             ".http_filters[envoy.filters.http.ext_authz].typed_config.failure_mode_alow")


def test_bad_value_and_unknown_type_fail_the_typed_load(tmp_path: Path) -> None:
    def bad_enum(config: Config) -> None:
        _filter(config, "envoy.filters.http.ext_proc")["processing_mode"]["request_body_mode"] = "BUFERED"

    problem = _one(_problems(tmp_path, bad_enum), "invalid value 'BUFERED' for ProcessingMode.request_body_mode")
    assert problem.where.endswith("typed_config.processing_mode.request_body_mode")

    def bad_type(config: Config) -> None:
        _filter(config, "envoy.filters.http.router")["@type"] = "type.googleapis.com/envoy.Nope"

    problem = _one(_problems(tmp_path, bad_type), "unknown type 'type.googleapis.com/envoy.Nope'")
    assert problem.where.endswith("http_filters[envoy.filters.http.router].typed_config.@type")


def test_other_invariants(tmp_path: Path) -> None:
    def break_several(config: Config) -> None:
        ext_authz = _filter(config, "envoy.filters.http.ext_authz")
        ext_authz["with_request_body"]["pack_as_bytes"] = True
        ext_proc = _filter(config, "envoy.filters.http.ext_proc")
        ext_proc["processing_mode"]["request_body_mode"] = "STREAMED"
        ext_proc.pop("metadata_options")
        cluster = next(c for c in config["static_resources"]["clusters"] if c["name"] == "lime_extproc")
        cluster.pop("typed_extension_protocol_options")
        _route(config, "models")["route"]["cluster"] = "catalog"

    messages = " | ".join(str(p) for p in _problems(tmp_path, break_several))
    for expected in ("with pack_as_bytes Envoy's HTTP mode sends no body", "request_body_mode must be BUFFERED",
                     "forwarding_namespaces.untyped must include envoy.filters.http.ext_authz",
                     "clusters[lime_extproc]: gRPC needs HTTP/2", "routes to cluster 'catalog', which is not defined"):
        assert expected in messages


def test_upstream_route_shadowed_or_bypassing_authz(tmp_path: Path) -> None:
    def catch_all_first_and_no_authz(config: Config) -> None:
        routes = _hcm(config)["route_config"]["virtual_hosts"][0]["routes"]
        routes.insert(0, routes.pop())
        _route(config, "upstream_mock")["typed_per_filter_config"] = {"envoy.filters.http.ext_authz": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute",
            "disabled": True}}

    messages = " | ".join(str(p) for p in _problems(tmp_path, catch_all_first_and_no_authz))
    assert "routes[upstream_mock]: never matches: the earlier route 'unrouted'" in messages
    assert "typed_per_filter_config disables envoy.filters.http.ext_authz" in messages


def test_the_pinned_route_is_checked_like_an_upstream_route(tmp_path: Path) -> None:
    """It sends requests to a failover candidate chosen by a header: bypassing ext_proc there would send them
    with the client's key."""
    def no_extproc(config: Config) -> None:
        _route(config, "pinned")["typed_per_filter_config"] = {"envoy.filters.http.ext_proc": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute",
            "disabled": True}}

    messages = " | ".join(str(p) for p in _problems(tmp_path, no_extproc))
    assert "routes[pinned]" in messages and "disables envoy.filters.http.ext_proc" in messages


def test_unreadable_file(tmp_path: Path) -> None:
    report = check(tmp_path / "missing.yaml", ["mock"], run_envoy=False)
    assert not report.ok and "cannot read it" in report.problems[0].message


def test_envoy_validate_rejects(tmp_path: Path) -> None:
    path = tmp_path / "envoy.yaml"
    config = shipped()
    _route(config, "upstream_mock")["route"]["cluster"] = "nowhere"
    path.write_text(yaml.safe_dump(config))
    ok, output = validate_with_envoy(path)
    assert not ok and "nowhere" in output
    report = check(path, ["mock"])
    assert any(p.where == "envoy --mode validate" for p in report.problems)


@pytest.mark.parametrize(
    "breakage",
    [
        lambda hcm: hcm.pop("use_remote_address"),
        lambda hcm: hcm.update(preserve_external_request_id=True),
        lambda hcm: hcm.update(internal_address_config={"cidr_ranges": []}),
    ],
    ids=["no use_remote_address", "preserve_external_request_id", "default internal ranges"],
)
def test_a_client_chosen_request_id(tmp_path: Path, breakage: Callable[[Config], object]) -> None:
    def mutate(config: Config) -> None:
        breakage(_hcm(config))

    _one(_problems(tmp_path, mutate), "x-request-id", "use_remote_address: true")


def _copy_set(tmp_path: Path) -> Path:
    for name in ("envoy.yaml", "routes.yaml", "clusters.yaml"):
        (tmp_path / name).write_text((SHIPPED.parent / name).read_text())
    return tmp_path / "envoy.yaml"


def test_the_routes_and_clusters_files_are_checked_with_the_bootstrap(tmp_path: Path) -> None:
    bootstrap = _copy_set(tmp_path)
    routes = yaml.safe_load((tmp_path / "routes.yaml").read_text())
    mock = next(r for r in routes["resources"][0]["virtual_hosts"][0]["routes"] if r["name"] == "upstream_mock")
    mock["route"]["timeout"] = "30s"
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(routes))
    _one(check(bootstrap, ["mock"], run_envoy=False).problems, "timeout is 30 s")
    (tmp_path / "clusters.yaml").unlink()
    _one(check(bootstrap, ["mock"], run_envoy=False).problems, "clusters.yaml: cannot read it")


def test_a_failover_group_names_only_candidates_that_exist(tmp_path: Path) -> None:
    def drop_backup(config: Config) -> None:
        clusters = config["static_resources"]["clusters"]
        clusters.remove(next(c for c in clusters if c["name"] == "candidate_mock_backup"))

    problem = _one(_problems(tmp_path, drop_backup, upstreams=("mock", "mock_failover")),
                   "failover candidate 'candidate_mock_backup' is not defined")
    assert problem.where == "clusters[upstream_mock_failover]"


def test_a_failover_candidate_names_its_credential_and_model(tmp_path: Path) -> None:
    def forget_the_model(config: Config) -> None:
        backup = next(c for c in config["static_resources"]["clusters"] if c["name"] == "candidate_mock_backup")
        del backup["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["metadata"]["filter_metadata"]["lime"]["model"]

    problem = _one(_problems(tmp_path, forget_the_model, upstreams=("mock", "mock_failover")),
                   "must name model in metadata.filter_metadata.lime")
    assert problem.where == "clusters[candidate_mock_backup].lb_endpoints[0]"


def _authz_response(config: Config) -> Config:
    response: Config = _filter(config, "envoy.filters.http.ext_authz")["http_service"]["authorization_response"]
    return response


@pytest.mark.parametrize(("mutate", "words"), [
    (lambda c: _authz_response(c)["dynamic_metadata_from_headers"]["patterns"].pop(0),
     ("dynamic_metadata_from_headers lacks grant", "the grant would not reach extproc")),
    (lambda c: _authz_response(c).pop("allowed_client_headers"),
     ("allowed_client_headers lacks content-type, retry-after, x-should-retry",)),
    (lambda c: _filter(c, "envoy.filters.http.ext_authz").pop("allowed_headers"),
     ("allowed_headers lacks anthropic-version, x-api-key, x-lime-tenant-id, x-request-id",)),
    (lambda c: _filter(c, "envoy.filters.http.ext_authz")["http_service"]["server_uri"].update(cluster="authz"),
     ("http_service names cluster 'authz', which is not defined",)),
    (lambda c: _authz_response(c)["allowed_upstream_headers"]["patterns"].append({"prefix": ""}),
     ("allowed_upstream_headers may list only x-lime-verified-tenant", "the grant")),
])
def test_authz_answers_need_their_header_lists(tmp_path: Path, mutate: Callable[[Config], Any],
                                               words: tuple[str, ...]) -> None:
    _one(_problems(tmp_path, mutate), *words)


def test_authz_over_grpc_is_refused_for_the_http_mode(tmp_path: Path) -> None:
    def back_to_grpc(config: Config) -> None:
        ext_authz = _filter(config, "envoy.filters.http.ext_authz")
        ext_authz.pop("http_service")
        ext_authz["grpc_service"] = {"envoy_grpc": {"cluster_name": "lime_authz"}}

    _one(_problems(tmp_path, back_to_grpc), "no http_service", "Envoy's HTTP ext_authz mode")


def test_authz_cluster_on_http2_is_refused(tmp_path: Path) -> None:
    def http2(config: Config) -> None:
        cluster = next(c for c in config["static_resources"]["clusters"] if c["name"] == "lime_authz")
        extproc = next(c for c in config["static_resources"]["clusters"] if c["name"] == "lime_extproc")
        cluster["typed_extension_protocol_options"] = extproc["typed_extension_protocol_options"]

    _one(_problems(tmp_path, http2), "clusters[lime_authz]: authz serves HTTP/1.1")


@pytest.mark.parametrize("carrier", [450, 453])
def test_a_carrier_status_without_its_mapper_is_refused(tmp_path: Path, carrier: int) -> None:
    def drop_mapper(config: Config) -> None:
        mappers = _hcm(config)["local_reply_config"]["mappers"]
        mappers[:] = [m for m in mappers if f"'default_value': {carrier}" not in str(m["filter"])]

    _one(_problems(tmp_path, drop_mapper), f"reach Envoy as {carrier}")


def test_a_route_without_match_is_reported_not_a_crash(tmp_path: Path) -> None:
    _one(_problems(tmp_path, lambda c: _route(c, "models").pop("match")), "routes[models]", "no match")
