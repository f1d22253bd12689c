"""Images, commands and settings: every image is built here or pinned, every `lime` service runs a real `lime`
command and reads its settings, and Envoy runs the config it rendered."""

from __future__ import annotations

import shlex

import pytest

from lime.settings import Settings, SettingsError
from tests.deploy_checks import ROOT, lime_command_error
from tests.unit.compose.stack import LIME_IMAGE, SERVICES, environment, is_lime, lime_argv, role


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
