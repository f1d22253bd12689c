"""docker-compose.yml, the Dockerfile and .dockerignore, checked without a Docker engine.

The compose file is interpolated the way ``docker compose`` does it, validated against the Compose
specification's JSON schema (tests/schemas/compose-spec.json, see tests/schemas/README.md), and then every name
in it is followed: commands are real ``lime`` commands, addresses point at services that listen there, health
checks probe a port their service listens on (and are run here against a loopback listener), start order is a
graph without cycles whose conditions can be met, mounts and build contexts exist, only Envoy and Prometheus are
published.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from lime.settings import Settings, SettingsError
from tests.deploy_checks import ROOT, http_server, lime_command_error, run_probe, tcp_listener

COMPOSE_FILE = ROOT / "docker-compose.yml"
SCHEMA = json.loads((ROOT / "tests" / "schemas" / "compose-spec.json").read_text())
#: What `docker compose` would be run with: only the required secret is set, everything else takes its default.
RUN_ENV = {"LIME_ADMIN_TOKEN": "admin-token-from-the-environment"}
LIME_IMAGE = "lime-gateway"
#: The addresses each `lime` command listens on, by its LIME_*_ADDR variable (lime/settings.py).
LISTENS = {
    "authz": ("LIME_AUTHZ_ADDR", "LIME_AUTHZ_METRICS_ADDR"),
    "extproc": ("LIME_EXTPROC_ADDR", "LIME_EXTPROC_METRICS_ADDR"),
    "catalog-api": ("LIME_CATALOG_ADDR", "LIME_ADMIN_ADDR"),
    "settler": ("LIME_SETTLER_ADDR",),
    "mock-upstream": ("LIME_MOCK_UPSTREAM_ADDR",),
    "envoy": ("LIME_PUBLIC_ADDR", "LIME_ENVOY_ADMIN_ADDR"),
}
FULL_STACK = {"envoy", "authz", "extproc", "catalog-api", "settler", "postgres", "redis", "prometheus",
              "mock-upstream", "migrate"}
PUBLISHED = {"envoy": ["8080:8080"], "prometheus": ["9090:9090"]}

_VARIABLE = re.compile(r"\$(?:\$|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
                       r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")


class InterpolationError(ValueError):
    pass


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Compose's variable substitution: ``${X}``, ``${X:-default}``, ``${X-default}``, ``${X:?error}``, ``$$``."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("name") or match.group("bare")
        op, arg = match.group("op"), match.group("arg") or ""
        current = env.get(name)
        missing = current is None or (current == "" and op is not None and op.startswith(":"))
        if op in (":-", "-"):
            return arg if missing else str(current)
        if op in (":?", "?"):
            if missing:
                raise InterpolationError(f"{name}: {arg}")
            return str(current)
        if op in (":+", "+"):
            return "" if missing else arg
        return current or ""

    return _VARIABLE.sub(substitute, value)


def load(env: Mapping[str, str] = RUN_ENV) -> dict[str, Any]:
    # PyYAML resolves the anchors and `<<` merge keys the file uses, as Compose does.
    document: dict[str, Any] = interpolate(yaml.safe_load(COMPOSE_FILE.read_text()), env)
    return document


COMPOSE = load()
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def is_lime(service: Mapping[str, Any]) -> bool:
    return str(service.get("image", "")).split(":")[0] == LIME_IMAGE or "build" in service


def lime_argv(name: str) -> list[str]:
    """The arguments `lime` gets in this service (the image's entrypoint is `lime`)."""
    service = SERVICES[name]
    if "entrypoint" in service:
        entry = service["entrypoint"]
        assert entry[:2] == ["sh", "-c"], f"{name}: only `sh -c` entrypoints are understood here"
        [first, *_] = [shlex.split(part) for part in entry[2].split("&&")]
        assert first[0] == "lime", f"{name}: the shell command should start with lime, got {first}"
        return first[1:]
    return list(service.get("command", []))


def role(name: str) -> str:
    """Which `lime` process a service runs: its command, or `envoy` for the rendered-config shell."""
    argv = lime_argv(name)
    return "envoy" if argv[:2] == ["envoy", "render"] else argv[0]


def listening_ports(name: str) -> set[int]:
    service = SERVICES[name]
    if not is_lime(service):
        return {9090} if name == "prometheus" else set()
    env = environment(service)
    ports = set()
    for variable in LISTENS.get(role(name), ()):
        ports.add(int(env[variable].rpartition(":")[2]))
    return ports


def depends_on(service: Mapping[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in deps.items()}


def closure(name: str) -> dict[str, str]:
    """Every service `name` waits for, directly or not, with the condition of the first edge reaching it."""
    seen: dict[str, str] = {}
    todo = list(depends_on(SERVICES[name]).items())
    while todo:
        target, condition = todo.pop()
        if target in seen:
            continue
        seen[target] = condition
        todo.extend(depends_on(SERVICES[target]).items())
    return seen


# --- the file as Compose reads it -------------------------------------------------------------------------------


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


# --- images, commands, settings ---------------------------------------------------------------------------------


def test_every_service_has_a_buildable_or_pinned_image() -> None:
    for name, service in SERVICES.items():
        if "build" in service:
            context = service["build"] if isinstance(service["build"], str) else service["build"]["context"]
            assert (ROOT / context / "Dockerfile").is_file(), name
            assert service["image"].split(":")[0] == LIME_IMAGE, name
        else:
            image = service["image"]
            assert ":" in image and not image.endswith(":latest"), f"{name}: pin a version, got {image}"


def test_every_lime_service_runs_a_real_lime_command() -> None:
    for name, service in SERVICES.items():
        if is_lime(service):
            assert lime_command_error(lime_argv(name)) is None, name


def test_a_typo_in_a_command_is_caught() -> None:
    assert lime_command_error(["setler"]) is not None


def test_envoy_runs_the_config_it_rendered() -> None:
    script = SERVICES["envoy"]["entrypoint"][2]
    render, watch, run = (shlex.split(part) for part in script.split("&&"))
    output = render[render.index("--output") + 1]
    # the watcher keeps rendering to the same place in the background, so route and cluster edits apply live
    assert watch[:4] == ["{", "lime", "envoy", "render"] and "--watch" in watch and watch[-1] == "}"
    assert watch[watch.index("--output") + 1] == output
    assert run[:2] == ["exec", "envoy"], "envoy must replace the shell to receive SIGTERM"
    assert run[run.index("-c") + 1] == output


def test_every_lime_service_reads_its_settings() -> None:
    for name, service in SERVICES.items():
        if is_lime(service):
            try:
                settings = Settings.from_env(environment(service))
            except SettingsError as error:
                pytest.fail(f"{name}: {error}")
            if role(name) == "catalog-api":
                assert settings.admin_token, "catalog-api refuses to start without an admin token"


# --- addresses ---------------------------------------------------------------------------------------------------


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


# --- health and start order --------------------------------------------------------------------------------------


def test_every_long_running_service_has_a_health_check() -> None:
    for name, service in SERVICES.items():
        if service.get("restart") == "no":
            continue
        test = service.get("healthcheck", {}).get("test")
        assert test and test[0] == "CMD", f"{name} needs a health check"


def probe_ports(test: list[str]) -> set[int]:
    return {int(port) for port in re.findall(r"127\.0\.0\.1(?:', |:)(\d+)", " ".join(test))}


def test_health_checks_probe_a_port_their_service_listens_on() -> None:
    for name, service in SERVICES.items():
        if (is_lime(service) and service.get("restart") != "no") or name == "prometheus":
            ports, listens = probe_ports(service["healthcheck"]["test"]), listening_ports(name)
            assert ports and ports <= listens, f"{name}: probes {ports}, listens on {listens}"


def test_the_python_health_checks_pass_when_serving_and_fail_when_not() -> None:
    checked = 0
    for name, service in SERVICES.items():
        test = service.get("healthcheck", {}).get("test", [])
        if test[1:2] != ["python"]:
            continue
        [port] = probe_ports(test)
        path = re.search(rf":{port}(/[^'\"]*)", " ".join(test))
        if path:
            with http_server({path.group(1): b"ok"}) as server:
                argv = [arg.replace(f":{port}/", f":{server.port}/") for arg in test[1:]]
                assert run_probe(argv) == 0, f"{name}: the check fails against a healthy server"
        else:
            with tcp_listener() as free:
                argv = [arg.replace(f"'127.0.0.1', {port}", f"'127.0.0.1', {free}") for arg in test[1:]]
                assert run_probe(argv) == 0, f"{name}: the check fails against a listening port"
        # Nothing listening (the service is down): the same check must fail.
        with tcp_listener() as closed:
            pass
        down = [arg.replace(str(port), str(closed)) for arg in test[1:]]
        assert run_probe(down) != 0, f"{name}: the check passes with nothing listening"
        checked += 1
    assert checked >= 6


def test_start_order_has_no_cycle_and_names_real_services() -> None:
    for name, service in SERVICES.items():
        for target in depends_on(service):
            assert target in SERVICES, f"{name} depends on unknown {target}"
        assert name not in closure(name), f"{name} waits for itself"


def test_start_conditions_can_be_met() -> None:
    for name, service in SERVICES.items():
        for target, condition in depends_on(service).items():
            if condition == "service_healthy":
                assert "healthcheck" in SERVICES[target], f"{name} waits for {target} to be healthy: it has no check"
            if condition == "service_completed_successfully":
                assert SERVICES[target].get("restart") == "no", f"{name} waits for {target} to finish: it restarts"


def test_services_start_after_what_they_need() -> None:
    for name, service in SERVICES.items():
        if not is_lime(service) or role(name) in ("mock-upstream", "envoy"):
            continue
        waits = closure(name)
        if role(name) == "migrate":
            assert waits.get("postgres") == "service_healthy"
            continue
        assert waits.get("migrate") == "service_completed_successfully", f"{name}: migrations first"
        assert waits.get("redis") == "service_healthy", f"{name}: Redis first"
    envoy = depends_on(SERVICES["envoy"])
    for sidecar in ("authz", "extproc", "catalog-api"):
        assert envoy.get(sidecar) == "service_healthy", f"envoy must wait for {sidecar} to be healthy"


# --- files the stack needs ---------------------------------------------------------------------------------------


def test_mounts_and_named_volumes_exist() -> None:
    for name, service in SERVICES.items():
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in COMPOSE.get("volumes", {}), f"{name}: volume {source} is not declared"


def test_prometheus_reads_the_config_mounted_for_it() -> None:
    service = SERVICES["prometheus"]
    mounts = {target: source for source, target, *_ in (m.split(":") for m in service["volumes"])}
    [config] = [arg.split("=", 1)[1] for arg in service["command"] if arg.startswith("--config.file=")]
    [(target, source)] = [(t, s) for t, s in mounts.items() if config.startswith(t + "/")]
    assert (ROOT / source / config.removeprefix(target + "/")).is_file()


def test_prometheus_scrapes_services_where_they_serve_metrics() -> None:
    targets = sorted((ROOT / "deploy" / "prometheus" / "targets").glob("*.json"))
    assert len(targets) >= 5
    scraped = set()
    for path in targets:
        for group in json.loads(path.read_text()):
            for target in group["targets"]:
                host, _, port = target.rpartition(":")
                assert host in SERVICES, f"{path.name}: {host} is no compose service"
                assert int(port) in listening_ports(host), f"{path.name}: {host} does not listen on {port}"
                scraped.add(host)
    assert scraped >= {"envoy", "authz", "extproc", "catalog-api", "settler"}


# --- Dockerfile and .dockerignore ------------------------------------------------------------------------------


def dockerfile() -> list[list[str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    return [line.split() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore drops ``path``: a pattern matches the path or a folder above it; ``**/`` any depth."""
    parts = Path(path).parts
    for i in range(1, len(parts) + 1):
        for pattern in patterns:
            if pattern.startswith("**/"):
                if fnmatch.fnmatch(parts[i - 1], pattern.removeprefix("**/")):
                    return True
            elif fnmatch.fnmatch("/".join(parts[:i]), pattern.strip("/")):
                return True
    return False


def test_the_dockerfile_copies_what_exists_and_is_not_ignored() -> None:
    patterns = dockerignore()
    copies = [words[1:-1] for words in dockerfile() if words[0] == "COPY"]
    assert copies
    for sources in copies:
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: no such file"
            assert not ignored(source, patterns), f"COPY {source}: excluded by .dockerignore"


def test_dockerignore_keeps_the_local_state_out() -> None:
    patterns = dockerignore()
    for local in (".venv", ".git", ".lime", "lime/__pycache__"):
        assert ignored(local, patterns), local
    assert not ignored("lime/settings.py", patterns)


def test_the_image_runs_lime_as_a_numeric_non_root_user() -> None:
    instructions = dockerfile()
    [entrypoint] = [words[1:] for words in instructions if words[0] == "ENTRYPOINT"]
    assert json.loads(" ".join(entrypoint)) == ["lime"]
    user = [words[1] for words in instructions if words[0] == "USER"][-1]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "Kubernetes' runAsNonRoot needs a numeric non-root user"


def test_the_image_has_the_envoy_config_it_points_to() -> None:
    instructions = dockerfile()
    [workdir] = [words[1] for words in instructions if words[0] == "WORKDIR"]
    env = " ".join(" ".join(words[1:]) for words in instructions if words[0] == "ENV")
    config = re.search(r"LIME_ENVOY_CONFIG=(\S+)", env)
    assert config
    path = Path(config.group(1))
    for words in instructions:
        if words[0] == "COPY" and len(words) == 3:
            target = Path(workdir) / words[2]
            if path.is_relative_to(target):
                assert (ROOT / words[1] / path.relative_to(target)).is_file()
                return
    pytest.fail(f"{path} is not copied into the image")
