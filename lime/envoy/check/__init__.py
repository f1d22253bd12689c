"""``lime envoy check``: verify that an SRE-edited Envoy config still keeps Lime's invariants.

``envoy --mode validate`` only proves that Envoy accepts a file; it cannot know that ext_authz must run before
ext_proc, that both must fail closed, or that a client must never be able to send ``x-lime-upstream``. This package
checks those rules on the typed ``Bootstrap`` that :mod:`lime.envoy.bootstrap` loads, then lets Envoy validate the
file too. Nothing on the request path imports it.

One module per part of the config: :mod:`.listener` (the public listener, admin, request ids), :mod:`.filters`
(the HTTP filter chain's order and the header strip), :mod:`.grpc_filters` (ext_authz and ext_proc),
:mod:`.answer_filters` (the Lua filters and the tap around ext_proc), :mod:`.routes` and :mod:`.failover` (the
aggregate clusters); :mod:`.invariants` runs them all and :mod:`.run` adds Envoy's own validation.

Every :class:`Problem` says what is wrong and how to fix it. ENVOY-NOTES.md explains the pitfalls behind the rules.
"""

from lime.envoy.bootstrap import Problem, load_bootstrap, validate_with_envoy
from lime.envoy.check.invariants import verify
from lime.envoy.check.run import CheckReport, check

__all__ = ["CheckReport", "Problem", "check", "load_bootstrap", "validate_with_envoy", "verify"]
