"""Why a key lookup leaks no timing about the key's value, shown rather than timed (the project has no timed
assertions): the store is asked for the SHA-256 of the presented key and nothing else, so no comparison ever runs
over the secret's bytes (a hash lookup's time depends on the hash, which an attacker cannot steer toward a stored
key); a string that cannot be a key is refused without asking the store at all; and the one secret Lime compares
itself, the admin token, goes through ``hmac.compare_digest``."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, cast

import pytest
from aiohttp.test_utils import TestClient, TestServer

from authz.check import authorize
from catalog_api import admin_api
from lime.directory import Directory
from lime.keys import KeyRecord, generate_key
from lime.protocols.errors import AuthError


class RecordingDirectory:
    """Answers key lookups from a dict keyed by hash, and remembers every question."""

    def __init__(self, records: dict[str, KeyRecord]) -> None:
        self.records = records
        self.asked: list[str] = []

    async def key(self, key_hash: str) -> KeyRecord | None:
        self.asked.append(key_hash)
        return self.records.get(key_hash)


def headers(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}", "x-lime-tenant-id": "t1"}


async def refused(directory: RecordingDirectory, key: str) -> AuthError:
    with pytest.raises(AuthError) as caught:
        await authorize("POST", "/v1/chat/completions", headers(key), b"{}", cast(Directory, directory))
    return caught.value


async def test_the_store_is_asked_for_the_sha256_of_the_key_only() -> None:
    stored, presented = generate_key(), generate_key()
    directory = RecordingDirectory({stored.hash: KeyRecord("k1", "t1", active=False)})
    await refused(directory, presented.secret)
    await refused(directory, stored.secret)
    assert directory.asked == [hashlib.sha256(presented.secret.encode()).hexdigest(),
                               hashlib.sha256(stored.secret.encode()).hexdigest()]
    assert not any(key.secret in question for question in directory.asked for key in (stored, presented))


@pytest.mark.parametrize("malformed", [
    "lime-sk-short", "lime-sk-" + "a" * 42 + "!", generate_key().secret + "x", "sk-" + "a" * 48, "x" * 8192,
    "lime-sk-" + "é" * 43,
])
async def test_a_string_that_cannot_be_a_key_is_refused_without_a_lookup(malformed: str) -> None:
    directory = RecordingDirectory({})
    error = await refused(directory, malformed)
    assert error.openai_code == "invalid_api_key"
    assert directory.asked == []


async def test_the_admin_token_is_compared_with_compare_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    original = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        compared.append((a, b))
        return original(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    app = admin_api.build_admin_app(cast(Any, None), cast(Any, None), "the-token")
    async with TestClient(TestServer(app)) as client:
        for presented in ("the-toke", "the-tokenx", "wrong"):
            response = await client.get("/admin/tenants", headers={"authorization": f"Bearer {presented}"})
            assert response.status == 401
    assert compared == [(p.encode(), b"the-token") for p in ("the-toke", "the-tokenx", "wrong")]
