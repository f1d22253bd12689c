from __future__ import annotations

import pytest

from lime.catalog import Brand, Catalog, Model, Package, Tenant, Upstream
from lime.protocols.endpoints import ENDPOINTS, ModelKind, Protocol
from lime.protocols.errors import NotFound, PermissionDenied, UnsupportedModel

BY_NAME = {e.name: e for e in ENDPOINTS}

CATALOG = Catalog(
    version=3,
    upstreams={"oa": Upstream("oa", Protocol.OPENAI), "an": Upstream("an", Protocol.ANTHROPIC)},
    models={
        "chat": Model("chat", "oa", "gpt-x", ModelKind.CHAT),
        "embed": Model("embed", "oa", "emb-x", ModelKind.EMBEDDING),
        "claude": Model("claude", "an", "claude-x", ModelKind.CHAT),
    },
    packages={"all": Package("all", "All", frozenset({"chat", "embed", "claude", "retired"}))},
    brands={"narrow": Brand("narrow", "Narrow", frozenset({"chat", "other"})), "open": Brand("open", "Open")},
    tenants={
        "t": Tenant("t", "T", "all"),
        "branded": Tenant("branded", "B", "all", "narrow"),
        "open": Tenant("open", "O", "all", "open"),
        "nopkg": Tenant("nopkg", "N", None),
        "off": Tenant("off", "Off", "all", active=False),
    },
)


def ids(tenant: str) -> list[str]:
    return [m.id for m in CATALOG.visible_models(CATALOG.tenants[tenant])]


def test_visible_models() -> None:
    assert ids("t") == ["chat", "claude", "embed"]  # sorted; a grant of a missing model is ignored
    assert ids("branded") == ["chat"]  # brand intersects, never adds
    assert ids("open") == ["chat", "claude", "embed"]  # a brand without allowlist does not narrow
    assert ids("nopkg") == []


def test_route_finds_the_upstream() -> None:
    route = CATALOG.route(CATALOG.tenants["t"], "chat", BY_NAME["chat_completions"])
    assert route.model.upstream_model == "gpt-x" and route.upstream.id == "oa"
    assert CATALOG.route(CATALOG.tenants["t"], "claude", BY_NAME["messages"]).upstream.id == "an"


@pytest.mark.parametrize(
    ("tenant", "model", "endpoint", "error"),
    [
        ("branded", "embed", "embeddings", NotFound),
        ("t", "nope", "chat_completions", NotFound),
        ("t", "embed", "chat_completions", UnsupportedModel),
        ("t", "chat", "embeddings", UnsupportedModel),
        ("t", "claude", "chat_completions", UnsupportedModel),
        ("t", "chat", "messages", UnsupportedModel),
        ("off", "chat", "chat_completions", PermissionDenied),
    ],
)
def test_route_refusals(tenant: str, model: str, endpoint: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        CATALOG.route(CATALOG.tenants[tenant], model, BY_NAME[endpoint])


def test_ungranted_and_unknown_say_the_same() -> None:
    messages = []
    for model in ("embed", "never-heard-of"):
        with pytest.raises(NotFound) as caught:
            CATALOG.route(CATALOG.tenants["branded"], model, BY_NAME["embeddings"])
        messages.append(caught.value.message.replace(model, "M"))
    assert messages[0] == messages[1]
