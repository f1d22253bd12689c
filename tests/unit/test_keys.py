from __future__ import annotations

import hashlib

from lime.keys import KEY_PREFIX, KeyRecord, generate_key, hash_key, looks_like_key, presented_key


def test_generated_keys_are_unique_and_hashed() -> None:
    keys = [generate_key() for _ in range(50)]
    assert len({k.secret for k in keys}) == 50
    for key in keys:
        assert key.secret.startswith(KEY_PREFIX) and len(key.secret) >= len(KEY_PREFIX) + 43
        assert key.hash == hashlib.sha256(key.secret.encode()).hexdigest() == hash_key(key.secret)
        assert key.secret not in repr(key)
        assert key.display_prefix == key.secret[:12]


def test_presented_key_reads_bearer_then_x_api_key() -> None:
    assert presented_key({"authorization": "Bearer abc"}) == "abc"
    assert presented_key({"authorization": "bearer   abc  "}) == "abc"
    assert presented_key({"x-api-key": "xyz"}) == "xyz"
    assert presented_key({"authorization": "Bearer abc", "x-api-key": "xyz"}) == "abc"
    assert presented_key({"authorization": "Basic abc", "x-api-key": "xyz"}) == "xyz"
    assert presented_key({"authorization": "Bearer "}) is None
    assert presented_key({}) is None


def test_key_record_usable() -> None:
    assert KeyRecord("k", "t", True).usable(now=1e12)
    assert not KeyRecord("k", "t", False).usable(now=0)
    assert KeyRecord("k", "t", True, expires_at=100.0).usable(now=99.0)
    assert not KeyRecord("k", "t", True, expires_at=100.0).usable(now=100.0)


def test_only_key_shaped_strings_look_like_keys() -> None:
    assert all(looks_like_key(generate_key().secret) for _ in range(20))
    for bad in ("", "lime-sk-", "sk-proj-abc", "lime-sk-" + "a" * 42, "lime-sk-" + "a" * 44,
                "lime-sk-" + "a" * 42 + "!", " lime-sk-" + "a" * 43):
        assert not looks_like_key(bad), bad
