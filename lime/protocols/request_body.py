"""Validation of a request body: bytes in, :class:`RequestFacts` out, or :class:`~lime.protocols.errors.BadRequest`.

Only what the gateway decides on is read (``model``, ``stream``, the output caps, the number of choices). The body
is otherwise passed through untouched, so unknown fields are never an error here: the upstream judges them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from lime.protocols.errors import BadRequest

__all__ = ["RequestFacts", "parse_request_body"]

# Output caps by the name each protocol gives them; which ones count depends on the endpoint (lime.money.output_cap).
_OUTPUT_CAP_FIELDS = ("max_completion_tokens", "max_tokens", "max_output_tokens")


@dataclass(frozen=True)
class RequestFacts:
    model: str
    stream: bool
    #: The output caps the body sets, by field name (validated positive integers).
    output_caps: dict[str, int]
    body: dict[str, Any]
    #: Chat's ``n``: how many answers the upstream is asked for, each up to the cap.
    choices: int = 1


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        # Two `model` keys would let the gateway and the upstream read different models.
        if key in obj:
            raise BadRequest(f"The request body has the key `{key}` more than once.", param=key)
        obj[key] = value
    return obj


def _parse_constant(name: str) -> None:
    raise BadRequest(f"The request body is not valid JSON: {name} is not allowed.")


def _parse_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        # 1e400 is valid JSON but no float: it would reach the upstream as `Infinity`, which is not.
        raise BadRequest(f"The request body holds a number out of range: {text[:40]}.")
    return value


def parse_request_body(raw: bytes, *, model_field: str = "model", stream_field: str = "stream") -> RequestFacts:
    """The facts of a body; the field names come from the endpoint's spec (``Endpoint.model_field``...)."""
    if not raw.strip():
        raise BadRequest("The request body is empty; expected a JSON object.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("The request body is not valid UTF-8.") from None
    try:
        body = json.loads(text, object_pairs_hook=_reject_duplicate_keys, parse_constant=_parse_constant,
                          parse_float=_parse_float)
    except RecursionError:
        raise BadRequest("The request body is nested too deeply.") from None
    except json.JSONDecodeError as exc:
        raise BadRequest(f"The request body is not valid JSON: {exc.msg} (char {exc.pos}).") from None
    except ValueError:
        # Python reads no integer of more than 4300 digits (CVE-2020-10735): valid JSON it cannot hold.
        raise BadRequest("The request body holds an integer too long to read.") from None
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    model = body.get(model_field)
    if model is None:
        raise BadRequest(f"You must provide a {model_field} parameter.", param=model_field, code="missing_model")
    if not isinstance(model, str) or not model:
        raise BadRequest(f"`{model_field}` must be a non-empty string.", param=model_field, code="invalid_type")
    stream = body.get(stream_field, False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise BadRequest(f"`{stream_field}` must be a boolean.", param=stream_field, code="invalid_type")
    return RequestFacts(model=model, stream=stream, output_caps=_output_caps(body), body=body,
                        choices=_positive(body, "n") or 1)


def _positive(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadRequest(f"`{name}` must be a positive integer.", param=name, code="invalid_type")
    return value


def _output_caps(body: dict[str, Any]) -> dict[str, int]:
    caps = {name: _positive(body, name) for name in _OUTPUT_CAP_FIELDS}
    return {name: cap for name, cap in caps.items() if cap is not None}
