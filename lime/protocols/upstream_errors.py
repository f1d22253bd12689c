"""What a client gets when its upstream answered an error: Lime's words, in the client's protocol. Pure.

An upstream's error body is written for the upstream's own customer, which is Lime, not Lime's client: a 401 is
about Lime's credential, a 429 about Lime's account, and the messages name the provider, its URLs, Lime's
organisation and project, the provider's request ids and fragments of Lime's key. So the body is never passed on;
the rule, by upstream status (docs/security.md has the table and the tests):

* 401, 402, 403, 407: the upstream refused the gateway's credential or account. The client gets a **502**
  ``upstream_auth_failed`` that says so (an SDK would otherwise raise an authentication error about the client's
  own, valid key), with ``x-should-retry: false`` (a broken credential does not heal in a second).
* 408, 429, 5xx (Anthropic's 529 included): busy, rate limited, failing. The **status** is kept, and the
  upstream's ``retry-after``/``retry-after-ms`` pass (the response header allowlist); the message is Lime's.
* any other 4xx (400 with ``param``, context_length_exceeded, content policy, 404 for a model, 413, 422): about
  the client's request. **Status, type, code and param** are kept; the message is kept but scrubbed of upstream
  identifiers (:func:`scrub`), and the upstream's model id is replaced by the public one.
* a body that is not JSON or not an error: the same status rule, with a generic message in Lime's words.
* anything else that is not a success (1xx, 3xx): a 502.

The status the client gets depends on the upstream status alone (:func:`client_status`), so extproc can send the
response headers before it has read the body; only the body waits for the end of the upstream's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from lime.protocols.endpoints import Protocol
from lime.protocols.error_bodies import ErrorReply, render_error
from lime.protocols.errors import (
    UpstreamAuthFailed,
    UpstreamBadAnswer,
    UpstreamError,
    UpstreamRefusedRequest,
    UpstreamUnavailable,
)

__all__ = ["AUTH_STATUSES", "MAX_ERROR_BODY_BYTES", "REDACTED", "RETRY_HEADERS", "UpstreamErrorBody", "client_status",
           "error_headers", "is_upstream_error", "read_error_body", "scrub", "upstream_error", "upstream_error_reply"]

#: The gateway's credential or account refused: 401 unauthorised, 402 payment required (a relay's balance),
#: 403 forbidden (key without permission, region not served), 407 proxy authentication.
AUTH_STATUSES = frozenset({401, 402, 403, 407})
#: Busy, failing or slow: the client may retry (the SDKs do, by status).
_TRANSIENT_4XX = frozenset({408, 429})
#: Upstream headers the client keeps on a rewritten error: how and when to retry. Everything else is already
#: removed by the response header allowlist.
RETRY_HEADERS = ("retry-after", "retry-after-ms")
#: How much of an error body is read; a longer one is no error body Lime can use.
MAX_ERROR_BODY_BYTES = 64 * 1024
#: Type, code and param come from the upstream: kept only when they look like what providers send.
_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]{0,63}")
_PARAM = re.compile(r"[A-Za-z0-9_.\[\]\-]{1,128}")
_MAX_MESSAGE_CHARS = 2000

REDACTED = "[redacted]"
# What identifies the upstream or Lime's account there, most specific first. A lookbehind instead of \b: a key
# fragment may follow an underscore (`key_sk-...`), while `task-` must stay `task-`. Every pattern is linear in the
# message (no unbounded repetition before a literal), so a hostile body costs microseconds, not seconds.
#: URLs (provider consoles, docs, relays' own hosts), any scheme: first, whole.
_URL = re.compile(r"[A-Za-z0-9+.\-]{0,16}://[^\s\"'`<>()\[\]{}]*")
_SCRUBS = (
    # Keys and their masked fragments: sk-..., sk-proj-****abcd, sk-ant-api03-...
    re.compile(r"(?<![A-Za-z0-9])sk-[A-Za-z0-9_*.\-]*"),
    # Organisation, project, user and request ids (OpenAI org-..., proj_..., user-...; both providers' req_...).
    re.compile(r"(?<![A-Za-z0-9])org-[A-Za-z0-9_*\-]*"),
    re.compile(r"(?<![A-Za-z0-9_])(?:proj|req|org)_[A-Za-z0-9_*\-]*"),
    re.compile(r"(?<![A-Za-z0-9])user-[A-Za-z0-9]{8,}"),
    # UUIDs (Anthropic organisation ids, some relays' request ids).
    re.compile(r"(?i)\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"),
    # The providers' own domains, wherever they stand (`api.openai.comXYZ` too).
    re.compile(r"(?i)(?:openai|anthropic|claude)\.(?:com|ai)"),
)
#: Host names without a scheme (api.openai.com, a relay's domain): a dotted word ending in a common top-level domain.
_WORDS = re.compile(r"[A-Za-z0-9_.\-]+")
_HOST = re.compile(r"(?i)[a-z0-9]\.(?:com|ai|net|org|io|dev|cloud|app)(?:\.|$)")
#: Long opaque tokens (a relay's key of its own format, an id): nothing a client needs to read.
_OPAQUE_LENGTH = 32


def _scrub_word(match: re.Match[str]) -> str:
    word = match.group(0).rstrip(".")
    end = match.group(0)[len(word):]  # a full stop after the word is the sentence's
    if _HOST.search(word):
        return REDACTED + end
    if len(word) >= _OPAQUE_LENGTH and any(c.isdigit() for c in word) and any(c.isalpha() for c in word) \
            and "." not in word:
        return REDACTED + end
    return word + end


#: The provider's name says who serves the gateway: the client is told "the upstream".
_PROVIDER_NAMES = re.compile(r"(?i)\b(?:openai|anthropic|azure openai|azure)\b")


@dataclass(frozen=True)
class UpstreamErrorBody:
    """The fields of a provider error body, as the upstream wrote them; ``protocol`` is the shape it had."""

    protocol: Protocol
    message: str | None
    type: str | None = None
    code: str | None = None
    param: str | None = None


def is_upstream_error(status: int) -> bool:
    """Whether an upstream answer with this status is rewritten (everything but a success)."""
    return not 200 <= status < 300


def client_status(upstream_status: int) -> int:
    """The status the client gets for an upstream error status (it depends on nothing else)."""
    if upstream_status in AUTH_STATUSES or not 400 <= upstream_status <= 599:
        return 502
    return upstream_status


def read_error_body(body: bytes) -> UpstreamErrorBody | None:
    """The provider error in ``body``: OpenAI's ``{"error": {...}}`` or Anthropic's ``{"type": "error", ...}``
    (a relay's ``{"error": "text"}`` too); ``None`` for anything else."""
    if len(body) > MAX_ERROR_BODY_BYTES:
        return None
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(document, dict):
        return None
    error = document.get("error")
    protocol = Protocol.ANTHROPIC if document.get("type") == "error" else Protocol.OPENAI
    if isinstance(error, str):
        return UpstreamErrorBody(protocol, error)
    if not isinstance(error, dict):
        return None
    message = error.get("message")
    return UpstreamErrorBody(
        protocol,
        message if isinstance(message, str) else None,
        type=_kept(error.get("type"), _IDENTIFIER),
        code=_kept(error.get("code"), _IDENTIFIER),
        param=_kept(error.get("param"), _PARAM),
    )


def _kept(value: object, pattern: re.Pattern[str]) -> str | None:
    return value if isinstance(value, str) and pattern.fullmatch(value) else None


def scrub(message: str, *, public_model: str, upstream_models: Iterable[str] = (),
          secrets: Iterable[str] = ()) -> str:
    """``message`` without the upstream's identifiers: the upstream model ids become the public id; URLs, host
    names, keys and key fragments, organisation, project, user and request ids, long opaque tokens and the
    provider's name are replaced. ``secrets`` (the credential Lime sent) are removed whatever their form."""
    text = message[:_MAX_MESSAGE_CHARS * 2]
    if len(text) < len(message):
        # The cut may have halved a secret, which would then match nothing below: the cut word goes too.
        text = text.rsplit(None, 1)[0] if text.strip() else ""
    for secret in secrets:
        if len(secret) >= 8:
            text = text.replace(secret, REDACTED)
    # The upstream's model ids go through the scrubs as a placeholder, which becomes the public id at the end (the
    # public id is the catalog's, not the upstream's: it is not scrubbed).
    placeholder = "\x00model\x00"
    for model in sorted({m for m in upstream_models if m and m != public_model}, key=len, reverse=True):
        # The id, and a dated snapshot of it (gpt-4o-2024-08-06, claude-3-5-sonnet@20241022).
        pattern = (r"(?<![A-Za-z0-9_.\-])" + re.escape(model) +
                   r"(?:-\d{4}-\d{2}-\d{2}|-\d{8}|@\d{8})?(?![A-Za-z0-9_\-])(?!\.[A-Za-z0-9])")
        text = re.sub(pattern, placeholder, text)
        # And inside anything else (`xgpt-4o`): a leak is worse than an odd word.
        text = text.replace(model, placeholder)
    # Until nothing changes: a replacement can expose what it stood next to (`api.openai.comsk-...`).
    for _ in range(8):
        before = text
        text = _WORDS.sub(_scrub_word, _URL.sub(REDACTED, text))
        for scrubbed in _SCRUBS:
            text = scrubbed.sub(REDACTED, text)
        text = _PROVIDER_NAMES.sub("the upstream", text)
        if text == before:
            break
    text = text.replace(placeholder, public_model)
    return text[:_MAX_MESSAGE_CHARS]


def upstream_error(status: int, body: bytes, protocol: Protocol, *, public_model: str,
                   upstream_models: Iterable[str] = (), secrets: Iterable[str] = ()) -> UpstreamError:
    """The error for an upstream answer with ``status`` and ``body``, for a client of ``protocol``."""
    if status in AUTH_STATUSES:
        return UpstreamAuthFailed(
            f"The gateway's upstream provider refused the gateway's own credentials (HTTP {status}). This is not "
            "a problem with your API key; the gateway's operators have been alerted. Please retry later.",
            upstream_status=status)
    if not 400 <= status <= 599:
        return UpstreamBadAnswer(f"The gateway's upstream gave an unexpected answer (HTTP {status}).",
                                 upstream_status=status)
    if status in _TRANSIENT_4XX or status >= 500:
        return _unavailable(status)
    fields = read_error_body(body)
    message = scrub(fields.message, public_model=public_model, upstream_models=upstream_models,
                    secrets=secrets).strip() if fields is not None and fields.message else ""
    if fields is None or not message:
        return UpstreamRefusedRequest(
            f"The upstream refused this request (HTTP {status}) without a reason the gateway can pass on.",
            upstream_status=status, anthropic_type=_anthropic_type_for(status))
    def clean(value: str | None) -> str | None:
        # A field the scrub would change carries an identifier: it is dropped, not mangled.
        kept = value is not None and scrub(value, public_model=public_model, upstream_models=upstream_models,
                                           secrets=secrets) == value
        return value if kept else None

    same_shape = fields.protocol is protocol
    kind = clean(fields.type) if same_shape else None
    return UpstreamRefusedRequest(
        message, upstream_status=status, param=clean(fields.param), code=clean(fields.code), openai_type=kind,
        anthropic_type=kind or _anthropic_type_for(status))


def _anthropic_type_for(status: int) -> str:
    # Anthropic's types by status (docs: errors), for a body that did not say.
    return {404: "not_found_error", 413: "request_too_large"}.get(status, "invalid_request_error")


def _unavailable(status: int) -> UpstreamUnavailable:
    if status == 429:
        return UpstreamUnavailable(
            "The gateway's upstream is rate limiting requests for this model. Please retry after a while.",
            upstream_status=status, code="upstream_rate_limited", openai_type="requests",
            anthropic_type="rate_limit_error")
    if status == 408:
        return UpstreamUnavailable("The gateway's upstream timed out on this request. Please retry.",
                                   upstream_status=status, code="upstream_timeout", openai_type="server_error",
                                   anthropic_type="timeout_error")
    if status == 529:
        return UpstreamUnavailable("The gateway's upstream is overloaded. Please retry after a while.",
                                   upstream_status=status, code="upstream_overloaded",
                                   anthropic_type="overloaded_error")
    return UpstreamUnavailable(f"The gateway's upstream failed to answer this request (HTTP {status}). Please retry.",
                               upstream_status=status)


def upstream_error_reply(status: int, headers: Mapping[str, str], body: bytes, protocol: Protocol, *,
                         public_model: str, upstream_models: Iterable[str] = (), secrets: Iterable[str] = (),
                         request_id: str | None = None) -> ErrorReply:
    """What the client gets for an upstream error answer: status, Lime's body, and the headers to set.
    ``headers`` are the upstream's (lower-case names)."""
    error = upstream_error(status, body, protocol, public_model=public_model, upstream_models=upstream_models,
                           secrets=secrets)
    reply = render_error(error, protocol, request_id)
    # The rendered headers (content-type; x-should-retry for a refused credential) and the upstream's retry advice.
    merged = dict(reply.headers) | dict(error_headers(status, headers))
    return ErrorReply(reply.status, reply.body, tuple(merged.items()))


def error_headers(upstream_status: int, headers: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The headers a rewritten error carries besides its content-type: the upstream's retry advice, except on a
    refused credential, which says not to retry."""
    if upstream_status in AUTH_STATUSES:
        return (("x-should-retry", "false"),)
    return tuple((name, headers[name]) for name in RETRY_HEADERS if name in headers)
