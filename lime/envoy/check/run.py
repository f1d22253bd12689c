"""The whole check: fold the config set into one bootstrap, verify Lime's invariants, then run Envoy's validation."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lime.envoy.bootstrap import Problem, load_bootstrap, validate_with_envoy
from lime.envoy.check.invariants import verify
from lime.envoy.files import ConfigSetError, fold, read_config_set

__all__ = ["CheckReport", "check"]


@dataclass
class CheckReport:
    problems: list[Problem] = field(default_factory=list)
    envoy_output: str = ""  # the tail of `envoy --mode validate`, empty when it was not run

    @property
    def ok(self) -> bool:
        return not self.problems


def check(path: Path, upstream_ids: Iterable[str], *, run_envoy: bool = True) -> CheckReport:
    """Lime's invariants on the set whose bootstrap is ``path`` (its routes and clusters files included), then
    (unless ``run_envoy`` is false) Envoy's own validation of the whole set."""
    try:
        config = read_config_set(path)
    except ConfigSetError as error:
        return CheckReport([Problem(str(path), str(error))])
    with tempfile.TemporaryDirectory(prefix="lime-envoy-check-") as folder:
        # envoy --mode validate does not load xDS files: check and validate the set folded into one bootstrap.
        folded = Path(folder) / "envoy.yaml"
        folded.write_text(yaml.safe_dump(fold(config), sort_keys=False))
        bootstrap, problems = load_bootstrap(folded)
        if bootstrap is not None:
            problems += verify(bootstrap, upstream_ids)
        report = CheckReport(problems)
        if run_envoy:
            # Run even when the typed load failed: Envoy's own message can be the clearer one.
            envoy_ok, report.envoy_output = validate_with_envoy(folded)
            if not envoy_ok:
                problems.append(Problem("envoy --mode validate", "Envoy rejects this set; its output says why."))
    return report
