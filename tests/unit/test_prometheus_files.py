"""deploy/prometheus, offline: the scrape configuration, the recording rules and alerts with their promtool tests,
the Grafana dashboards, and docs/metrics.md that describes them.

promtool comes with Debian's ``prometheus`` package (``scripts/ensure-system-deps`` installs it). CI has it, so a
missing promtool fails these tests instead of skipping them: a skipped check is a check nobody runs.

Besides what promtool checks, the PromQL in the dashboards, rules and docs is held to a few rules that promtool
cannot know: rate()/increase() only over counters, histogram_quantile() only over ``sum by (le, ...)`` of the rate
of ``_bucket`` series, the settler's Redis gauges aggregated with max() (every settler reports the same value).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "deploy" / "prometheus"
CONFIG = PROM / "prometheus.yml"
RULE_FILES = (PROM / "rules" / "billing.yml", PROM / "rules" / "alerts.yml")
RULE_TESTS = (PROM / "tests" / "billing_test.yml", PROM / "tests" / "alerts_test.yml")
DASHBOARDS = (PROM / "grafana" / "lime-billing.json", PROM / "grafana" / "lime-sre.json")
DOCS = ROOT / "docs" / "metrics.md"

#: The metric contract: job -> (metrics_path, docker-compose address).
JOBS = {
    "envoy": ("/stats/prometheus", "envoy:9902"),
    "authz": ("/metrics", "authz:9011"),
    "extproc": ("/metrics", "extproc:9012"),
    "catalog_api": ("/metrics", "catalog-api:9004"),
    "settler": ("/metrics", "settler:9005"),
}
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
#: Read from Redis by each settler at scrape time: the same value on every settler instance.
SETTLER_GAUGES = ("lime_reservations_open", "lime_settlement_queue_depth", "lime_settlement_lag_seconds",
                  "lime_settlement_dead_letter_depth")

# A metric name of Lime's; not the middle of a recording rule's name (level:metric:operations).
_LIME_METRIC = re.compile(r"(?<![\w:$])lime_[a-z0-9_]+(?![\w:])")
_RECORDED_NAME = re.compile(r"\b[a-z_]+:[a-z0-9_]+:[a-z0-9_]+\b")
_RANGE_FUNCTION = re.compile(r"\b(?:rate|irate|increase)\(\s*([^\s({\[]+)")
_HISTOGRAM_QUANTILE = re.compile(r"\bhistogram_quantile\(")
_GOOD_QUANTILE = re.compile(
    r"\bhistogram_quantile\(\s*[0-9.]+\s*,\s*sum by \(([^)]*)\)\s*\(\s*rate\(\s*([a-zA-Z_][a-zA-Z0-9_]*)")
_AGGREGATIONS = {"sum", "max", "min", "avg", "count", "topk", "bottomk", "quantile", "stddev", "stdvar", "group"}


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is missing: install Debian's prometheus package (scripts/ensure-system-deps)")
    return path


def _run(*argv: str) -> str:
    result = subprocess.run(list(argv), cwd=PROM, capture_output=True, text=True, timeout=120, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(argv)} failed:\n{output}"
    return output


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _config() -> dict[str, Any]:
    config: dict[str, Any] = _yaml(CONFIG)
    return config


def _jobs() -> dict[str, dict[str, Any]]:
    return {job["job_name"]: job for job in _config()["scrape_configs"]}


def _rules() -> list[dict[str, Any]]:
    return [rule for path in RULE_FILES for group in _yaml(path)["groups"] for rule in group["rules"]]


def _recorded() -> set[str]:
    return {rule["record"] for rule in _rules() if "record" in rule}


def _alerts() -> list[dict[str, Any]]:
    return [rule for rule in _rules() if "alert" in rule]


def _dashboard(path: Path) -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(path.read_text())
    return dashboard


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def _dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    return [target["expr"] for panel in _panels(dashboard["panels"]) for target in panel.get("targets", [])]


def _as_promql(grafana_expr: str) -> str:
    """Grafana's variables replaced by values PromQL accepts: intervals by a duration, the rest by a word."""
    expr = re.sub(r"\$__\w+", "5m", grafana_expr)
    return re.sub(r"\$\{?\w+(?::\w+)?\}?", "x", expr)


def _docs_exprs() -> list[str]:
    """The expressions of the ```promql blocks of docs/metrics.md. Expressions are separated by blank or comment
    lines, or start at column 0; a line that is indented or starts with an operator continues the one above."""
    exprs: list[str] = []
    for block in re.findall(r"```promql\n(.*?)```", DOCS.read_text(), re.S):
        current: list[str] = []
        for line in block.splitlines():
            stripped = line.strip()
            continues = bool(current) and (line[:1].isspace() or stripped[:1] in "/+-*")
            if not stripped or stripped.startswith("#") or not continues:
                if current:
                    exprs.append("\n".join(current))
                current = [line] if stripped and not stripped.startswith("#") else []
            else:
                current.append(line)
        if current:
            exprs.append("\n".join(current))
    return exprs


def _dashboard_and_docs_exprs() -> list[tuple[str, str]]:
    """(where, PromQL) of every expression in the dashboards and the docs (promtool checks the rules' own)."""
    found = [(path.name, _as_promql(expr)) for path in DASHBOARDS for expr in _dashboard_exprs(_dashboard(path))]
    return found + [(DOCS.name, expr) for expr in _docs_exprs()]


def _all_exprs() -> list[tuple[str, str]]:
    """(where, PromQL) of every expression in the rules, the dashboards and the docs."""
    rules = [(f"{path.name}: {rule.get('record') or rule.get('alert')}", str(rule["expr"]))
             for path in RULE_FILES for group in _yaml(path)["groups"] for rule in group["rules"]]
    return rules + _dashboard_and_docs_exprs()


def _documented(name: str) -> bool:
    return f"`{name}`" in DOCS.read_text()


# --- prometheus.yml and its targets ---------------------------------------------------------------------------


def test_promtool_accepts_the_config_its_rules_and_target_files(promtool: str) -> None:
    output = _run(promtool, "check", "config", str(CONFIG))
    for path in RULE_FILES:
        assert path.name in output, f"promtool did not load {path.name}:\n{output}"


def test_the_config_has_one_job_per_service_reading_its_targets_file() -> None:
    config = _config()
    assert config["global"]["scrape_interval"] == "15s"
    assert config["global"]["evaluation_interval"] == "15s"
    assert config["rule_files"] == ["rules/*.yml"]
    jobs = _jobs()
    assert set(jobs) == set(JOBS)
    for name, job in jobs.items():
        assert job.get("metrics_path", "/metrics") == JOBS[name][0], name
        assert job["file_sd_configs"] == [{"files": [f"targets/{name}.json"]}], name
        # The global intervals are the only ones: a deployment changes them in one place.
        assert "scrape_interval" not in job and "scrape_timeout" not in job, name
        assert "static_configs" not in job, name


def test_every_job_has_its_targets_file_with_the_compose_address() -> None:
    files = {path.stem: path for path in (PROM / "targets").glob("*.json")}
    assert set(files) == set(_jobs()), "a targets file per job, and no other"
    for job, path in files.items():
        groups = json.loads(path.read_text())
        assert isinstance(groups, list) and groups, path
        targets = [target for group in groups for target in group["targets"]]
        assert targets == [JOBS[job][1]], path


# --- rules and alerts -----------------------------------------------------------------------------------------


def test_promtool_accepts_the_rules(promtool: str) -> None:
    output = _run(promtool, "check", "rules", *map(str, RULE_FILES))
    assert output.count("SUCCESS") == len(RULE_FILES), output


def test_promtool_rule_unit_tests_pass(promtool: str) -> None:
    output = _run(promtool, "test", "rules", *map(str, RULE_TESTS))
    assert output.count("SUCCESS") == len(RULE_TESTS), output


def test_the_unit_tests_cover_every_recording_rule_and_make_every_alert_fire() -> None:
    tested_exprs = ""
    fired: set[str] = set()
    quiet: set[str] = set()
    for path in RULE_TESTS:
        spec = _yaml(path)
        assert all(not Path(rules).is_absolute() for rules in spec["rule_files"]), path
        for case in spec["tests"]:
            tested_exprs += " ".join(test["expr"] for test in case.get("promql_expr_test", []))
            for test in case.get("alert_rule_test", []):
                (fired if test.get("exp_alerts") else quiet).add(test["alertname"])
    recorded = _recorded()
    assert recorded
    for name in recorded:
        assert re.search(rf"(?<![\w:]){re.escape(name)}(?![\w:])", tested_exprs), f"no promtool test reads {name}"
    alerts = {alert["alert"] for alert in _alerts()}
    assert alerts and alerts <= fired, f"alerts never shown firing: {alerts - fired}"
    assert alerts <= quiet, f"alerts never shown quiet: {alerts - quiet}"


def test_recording_rules_follow_level_metric_operations() -> None:
    for rule in _rules():
        if "record" in rule:
            level, metric, operations = rule["record"].split(":")
            assert level and operations, rule["record"]
            assert metric.startswith("lime_") and not metric.endswith("_total"), rule["record"]
            read = rule["expr"].replace("_total", "").replace("micropoints", "points")
            assert metric.split("_per_")[0] in read, rule["record"]


def test_every_alert_has_a_severity_and_tells_the_on_call_where_to_look() -> None:
    docs = DOCS.read_text()
    alerts = _alerts()
    assert len(alerts) >= 6
    for alert in alerts:
        name = alert["alert"]
        assert alert["labels"]["severity"] in {"critical", "warning"}, name
        annotations = alert["annotations"]
        assert annotations["summary"].strip() and annotations["description"].strip(), name
        assert f"docs/metrics.md#{name.lower()}" in annotations["description"], name
        assert f"\n### {name}\n" in docs, f"docs/metrics.md has no runbook section for {name}"


# --- dashboards -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.name)
def test_dashboard_uses_the_datasource_variable_everywhere(path: Path) -> None:
    dashboard = _dashboard(path)
    assert dashboard["schemaVersion"] >= 36
    assert dashboard["uid"] == path.stem
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"] == DATASOURCE, variable["name"]
    panels = list(_panels(dashboard["panels"]))
    assert len([panel for panel in panels if panel["type"] != "row"]) >= 10
    for panel in panels:
        if panel["type"] == "row":
            assert not panel.get("targets"), panel["title"]
            continue
        assert panel.get("datasource") == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target.get("datasource") == DATASOURCE, panel["title"]
            assert target["expr"].strip(), panel["title"]


def test_billing_dashboard_filters_by_tenant() -> None:
    dashboard = _dashboard(PROM / "grafana" / "lime-billing.json")
    tenant = {variable["name"]: variable for variable in dashboard["templating"]["list"]}["tenant"]
    assert tenant["definition"] == "label_values(lime_tokens_total, tenant)"
    assert tenant["query"]["query"] == tenant["definition"]
    exprs = _dashboard_exprs(dashboard)
    assert sum('tenant=~"$tenant"' in expr for expr in exprs) >= len(exprs) - 2, "the top-10 panels are the exceptions"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.name)
def test_dashboard_panels_do_not_overlap(path: Path) -> None:
    taken: set[tuple[int, int]] = set()
    for panel in _panels(_dashboard(path)["panels"]):
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        cells = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


def test_promtool_parses_every_dashboard_and_docs_expression(promtool: str, tmp_path: Path) -> None:
    exprs = _dashboard_and_docs_exprs()
    assert len(exprs) > 40
    rules = {"groups": [{"name": "parse", "rules": [{"record": f"parsed_{index}", "expr": expr}
                                                    for index, (_, expr) in enumerate(exprs)]}]}
    rules_file = tmp_path / "exprs.yml"
    rules_file.write_text(yaml.safe_dump(rules))
    result = subprocess.run([promtool, "check", "rules", str(rules_file)], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, f"{result.stdout}{result.stderr}\n" + "\n".join(
        f"parsed_{index} ({where}): {expr}" for index, (where, expr) in enumerate(exprs))


def test_recorded_series_used_by_the_dashboards_exist() -> None:
    recorded = _recorded()
    for path in DASHBOARDS:
        for expr in _dashboard_exprs(_dashboard(path)):
            for name in _RECORDED_NAME.findall(expr):
                assert name in recorded, f"{path.name} reads {name}, which no rule records"


# --- PromQL that promtool accepts but that would be wrong ----------------------------------------------------


def test_rate_and_increase_only_over_counters() -> None:
    for where, expr in _all_exprs():
        for match in _RANGE_FUNCTION.finditer(expr):
            name = match.group(1)
            assert re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", name) and name not in _AGGREGATIONS, \
                f"{where}: rate/increase over {name}... rather than over a counter: {expr}"
            if name.startswith("lime_"):
                assert name.endswith(("_total", "_bucket", "_sum", "_count")), f"{where}: {name} is no counter"


def test_histogram_quantile_over_the_summed_rate_of_buckets() -> None:
    for where, expr in _all_exprs():
        quantiles = _HISTOGRAM_QUANTILE.findall(expr)
        good = _GOOD_QUANTILE.findall(expr)
        assert len(good) == len(quantiles), f"{where}: want histogram_quantile(q, sum by (le) (rate(x_bucket))): {expr}"
        for labels, name in good:
            assert "le" in [label.strip() for label in labels.split(",")], f"{where}: {expr}"
            assert name.endswith("_bucket"), f"{where}: {expr}"


def test_settler_gauges_are_never_summed_over_settlers() -> None:
    for where, expr in _all_exprs():
        for gauge in SETTLER_GAUGES:
            assert not re.search(rf"\bsum\b[^()]*\(\s*{gauge}\b", expr), f"{where}: use max({gauge}): {expr}"


# --- docs/metrics.md ------------------------------------------------------------------------------------------


def test_every_lime_metric_of_the_dashboards_and_rules_is_documented() -> None:
    names: set[str] = set()
    for path in (*RULE_FILES, *DASHBOARDS):
        names |= set(_LIME_METRIC.findall(path.read_text()))
    names = {re.sub(r"_(bucket|sum|count)$", "", name) for name in names}
    assert {"lime_tokens_total", "lime_request_duration_seconds", "lime_reservations_open"} <= names
    missing = sorted(name for name in names if not _documented(name))
    assert not missing, f"docs/metrics.md does not document {missing}"


def test_docs_name_every_recording_rule_and_every_target() -> None:
    for name in _recorded():
        assert _documented(name), name
    docs = DOCS.read_text()
    for job, (path, address) in JOBS.items():
        assert f"`{job}`" in docs and f"`{path}`" in docs and f"`{address}`" in docs, job


def test_docs_expressions_were_found() -> None:
    exprs = _docs_exprs()
    assert len(exprs) >= 15
    assert any("lime_tokens_total" in expr for expr in exprs)
    assert all(not expr.lstrip().startswith(("/", "+", "and ", "or ")) for expr in exprs), exprs
