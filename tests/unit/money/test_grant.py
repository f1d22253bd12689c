"""The grant's trip through Envoy: authz packs it into one metadata value, extproc reads the same grant back."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import fields, replace

from google.protobuf import struct_pb2
from hypothesis import given
from hypothesis import strategies as st

from lime.envoy.api import AUTHZ_NAMESPACE, grant_of, proc_pb
from lime.money.grant import LOGGED_FIELDS, PACKED_KEY, Grant

_VALUES = {"str": st.text(), "bool": st.booleans(), "int": st.integers(min_value=-(2**62), max_value=2**62),
           "float": st.floats(allow_nan=False)}
#: Any grant, built from Grant's own field list: a field added there is covered here without an edit.
GRANTS = st.builds(Grant, **{f.name: _VALUES[str(f.type)] for f in fields(Grant)})


def through_envoy(metadata: Mapping[str, object]) -> object:
    """An ext_proc message carrying authz's metadata as Envoy forwards it (a Struct, serialised and parsed)."""
    struct = struct_pb2.Struct()
    struct.update(metadata)
    request = proc_pb.ProcessingRequest()
    request.metadata_context.filter_metadata[AUTHZ_NAMESPACE].CopyFrom(struct)
    return proc_pb.ProcessingRequest.FromString(request.SerializeToString())


@given(GRANTS)
def test_a_grant_reaches_extproc_as_authz_wrote_it(grant: Grant) -> None:
    assert grant_of(through_envoy(grant.to_metadata())) == grant


def test_the_grant_is_one_metadata_value_beside_what_the_access_log_reads() -> None:
    grant = Grant("req-1", "demo", "key-1", "chat", "lime-chat", "mock", "gpt-4o-mini", True, reserved=7)
    assert set(grant.to_metadata()) == {PACKED_KEY, *LOGGED_FIELDS}
    assert grant.to_metadata()["model"] == "lime-chat"


def test_a_grant_of_another_release_is_refused_not_misread() -> None:
    grant = Grant("req-1", "demo", "key-1", "chat", "lime-chat", "mock", "gpt-4o-mini", False)
    version, *values = json.loads(grant.to_metadata()[PACKED_KEY])
    # The same values under another field list (a field added in the next release): no grant, so no request.
    assert Grant.unpack(json.dumps(["g1:00000000", *values])) is None
    assert Grant.unpack(json.dumps([version, *values, 0])) is None
    assert Grant.unpack("not json") is None
    assert grant_of(through_envoy({"tenant_id": "demo", "model": "lime-chat"})) is None
    assert Grant.unpack(json.dumps([version, *values])) == replace(grant)
