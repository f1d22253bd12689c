"""The Dockerfile and .dockerignore: what the image copies exists and is not ignored, local state stays out, lime
runs as a numeric non-root user, and the Envoy config it points to is in the image."""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path

import pytest

from tests.deploy_checks import ROOT


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
