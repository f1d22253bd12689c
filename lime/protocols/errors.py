"""Lime's error tree. Each class carries the HTTP status and the stable codes a client sees.

    LimeError
    ├── BadRequest            400  body not JSON, model missing, wrong types
    │   ├── UnsupportedModel  400  the model exists but not on this endpoint or protocol
    │   └── UnpricedModifier  400  a service tier or server tool the model has no price for; not retryable
    ├── AuthError             401  missing, unknown, revoked or expired key
    ├── PermissionDenied      403  key of another tenant, tenant suspended
    ├── NotFound              404  unknown path, model not granted or unknown
    ├── MethodNotAllowed      405
    ├── Conflict              409  admin: the id is taken
    ├── QuotaExceeded         429  not enough points (Anthropic: 402 billing_error); not retryable
    ├── RateLimited           429  RPM, TPM or concurrency over the package's limit; ``retry-after``
    │   └── TooLargeForLimit  429  one request needs more tokens than the package allows a minute; not retryable
    ├── ServiceUnavailable    503  a part of the money path is down: fail closed
    └── UpstreamError         what an upstream answered, in Lime's words (lime.protocols.upstream_errors)
        ├── UpstreamAuthFailed      502  the upstream refused the gateway's credential or account (401/402/403/407)
        ├── UpstreamRefusedRequest  4xx  the upstream refused the client's request: its status, type, code, param
        ├── UpstreamUnavailable     408, 429, 5xx kept: busy, rate limited or failing; retry later
        └── UpstreamBadAnswer       502  a status that is neither a success nor an error

A body over the size limit never reaches Python: Envoy answers 413 itself (``local_reply_config``).
Raise these anywhere below the service edge; :mod:`lime.protocols.error_bodies` alone turns one into an OpenAI or an
Anthropic body. Anything else escaping a handler is a bug and is logged as one.
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "BadRequest",
    "Conflict",
    "LimeError",
    "MethodNotAllowed",
    "NotFound",
    "PermissionDenied",
    "QuotaExceeded",
    "RateLimited",
    "ServiceUnavailable",
    "TooLargeForLimit",
    "UnpricedModifier",
    "UnsupportedModel",
    "UpstreamAuthFailed",
    "UpstreamBadAnswer",
    "UpstreamError",
    "UpstreamRefusedRequest",
    "UpstreamUnavailable",
]


class LimeError(Exception):
    status: int = 500
    #: Where Anthropic uses another status for the same condition (402 for billing).
    anthropic_status: int | None = None
    #: Seconds after which a retry may succeed, sent as ``retry-after``; ``None``: no header.
    retry_after: int | None = None
    #: ``False``: the same request can never succeed as it is, so the client is told not to retry
    #: (``x-should-retry: false``, which both SDK families honour; they retry 429 and 5xx twice otherwise).
    retryable: bool = True
    #: OpenAI ``error.type`` and ``error.code``; Anthropic ``error.type``.
    openai_type: str = "server_error"
    openai_code: str | None = "internal_error"
    anthropic_type: str = "api_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.openai_code = code


class BadRequest(LimeError):
    status = 400
    openai_type = "invalid_request_error"
    openai_code = "invalid_request"
    anthropic_type = "invalid_request_error"


class UnsupportedModel(BadRequest):
    openai_code = "model_not_supported"


class AuthError(LimeError):
    status = 401
    # OpenAI itself answers a bad key with type invalid_request_error (fixtures: openai-error-401-invalid-api-key)
    openai_type = "invalid_request_error"
    openai_code = "invalid_api_key"
    anthropic_type = "authentication_error"


class PermissionDenied(LimeError):
    status = 403
    openai_type = "permission_error"
    openai_code = "permission_denied"
    anthropic_type = "permission_error"


class NotFound(LimeError):
    status = 404
    openai_type = "invalid_request_error"
    openai_code = "not_found"
    anthropic_type = "not_found_error"


class MethodNotAllowed(LimeError):
    status = 405
    openai_type = "invalid_request_error"
    openai_code = "method_not_allowed"
    anthropic_type = "invalid_request_error"


class Conflict(LimeError):
    status = 409
    openai_type = "invalid_request_error"
    openai_code = "conflict"
    anthropic_type = "invalid_request_error"


class QuotaExceeded(LimeError):
    status = 429
    anthropic_status = 402
    openai_type = "insufficient_quota"
    openai_code = "insufficient_quota"
    anthropic_type = "billing_error"
    # Points come back only when someone adds them: a retry seconds later would be refused the same way.
    retryable = False


class RateLimited(LimeError):
    status = 429
    openai_type = "requests"
    openai_code = "rate_limit_exceeded"
    anthropic_type = "rate_limit_error"

    def __init__(self, message: str, *, retry_after: int, limit: str = "requests") -> None:
        super().__init__(message)
        self.retry_after = retry_after
        # OpenAI names the exhausted limit in `type` (fixtures: openai-error-429-rate-limit-exceeded).
        self.openai_type = limit


class TooLargeForLimit(RateLimited):
    def __init__(self, message: str) -> None:
        super().__init__(message, retry_after=0, limit="tokens")
        self.retry_after = None
        self.retryable = False


class ServiceUnavailable(LimeError):
    status = 503
    openai_type = "server_error"
    openai_code = "service_unavailable"
    anthropic_type = "api_error"


class UpstreamError(LimeError):
    """What an upstream answered instead of an answer. Status and types are per instance: they follow the upstream's
    status (the rule is in :mod:`lime.protocols.upstream_errors`). ``upstream_status`` is what the upstream said, for
    logs and metrics; ``status`` is what the client gets."""

    openai_type = "server_error"
    openai_code: str | None = "upstream_error"
    anthropic_type = "api_error"

    def __init__(self, message: str, *, upstream_status: int, status: int | None = None, param: str | None = None,
                 code: str | None = None, openai_type: str | None = None, anthropic_type: str | None = None) -> None:
        super().__init__(message, param=param, code=code)
        self.upstream_status = upstream_status
        self.status = upstream_status if status is None else status
        if openai_type is not None:
            self.openai_type = openai_type
        if anthropic_type is not None:
            self.anthropic_type = anthropic_type


class UpstreamAuthFailed(UpstreamError):
    """The upstream refused the gateway's own credential or account: a 502, never an authentication error (the
    client's Lime key was fine: authz checked it)."""

    status = 502
    openai_code = "upstream_auth_failed"
    # A refused credential does not heal in the seconds an SDK waits before its retries.
    retryable = False

    def __init__(self, message: str, *, upstream_status: int) -> None:
        super().__init__(message, upstream_status=upstream_status, status=502)


class UpstreamRefusedRequest(UpstreamError):
    """The upstream refused the client's request (bad parameter, context too long, content policy, unknown model,
    too large): its status, type, code and param, with the message scrubbed of the upstream's identifiers."""

    openai_type = "invalid_request_error"
    openai_code = None
    anthropic_type = "invalid_request_error"


class UpstreamUnavailable(UpstreamError):
    """The upstream is rate limiting, overloaded, failing or timed out: its status (and ``retry-after``) kept,
    Lime's message."""


class UpstreamBadAnswer(UpstreamError):
    """A status that is neither a success nor an error (1xx, 3xx): the upstream answered something Lime cannot
    pass on."""

    status = 502

    def __init__(self, message: str, *, upstream_status: int) -> None:
        super().__init__(message, upstream_status=upstream_status, status=502)


class UnpricedModifier(BadRequest):
    """The request asks for something the provider bills apart (a service tier, a server tool) on a model whose price
    sheet has no price for it: refused before anything is held, as no retry can change it."""

    openai_code = "unsupported_parameter"
    retryable = False
