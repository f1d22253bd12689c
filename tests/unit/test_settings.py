from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from lime.settings import Address, Settings, SettingsError, upstream_env_name


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.public == Address("127.0.0.1", 8080)
    assert settings.database_url is None and settings.admin_token is None
    assert settings.upstream_credential("mock") is None


def test_values_are_cast_and_named_in_errors() -> None:
    settings = Settings.from_env({"LIME_PUBLIC_ADDR": "0.0.0.0:80", "LIME_KEY_CACHE_SECONDS": "5"})
    assert settings.public == Address("0.0.0.0", 80) and settings.key_cache_seconds == 5
    with pytest.raises(SettingsError, match="LIME_AUTHZ_ADDR"):
        Settings.from_env({"LIME_AUTHZ_ADDR": "nope"})
    with pytest.raises(SettingsError, match="LIME_KEY_CACHE_SECONDS"):
        Settings.from_env({"LIME_KEY_CACHE_SECONDS": "soon"})
    with pytest.raises(SettingsError, match="LIME_DATABASE_URL"):
        Settings.from_env({}).require_database_url()


def test_points_per_usd_is_an_exact_positive_rate() -> None:
    assert Settings.from_env({}).points_per_usd == Decimal(1)
    assert Settings.from_env({"LIME_POINTS_PER_USD": "7.3"}).points_per_usd == Decimal("7.3")  # not 7.29999...
    for bad in ("0", "-1", "seven", "NaN", "inf"):
        with pytest.raises(SettingsError, match="LIME_POINTS_PER_USD"):
            Settings.from_env({"LIME_POINTS_PER_USD": bad})


def test_upstream_keys_from_env_and_secret_files(tmp_path: Path) -> None:
    (tmp_path / "upstream_new-api").write_text("from-file\n")
    (tmp_path / "admin_token").write_text("tok\n")
    settings = Settings.from_env({
        "LIME_SECRETS_DIR": str(tmp_path),
        "LIME_UPSTREAM_KEY_MOCK_ANTHROPIC": "from-env",
        "LIME_ADMIN_TOKEN": "ignored-when-a-file-exists",
    })
    assert settings.upstream_credential("new-api") == "from-file"
    assert settings.upstream_credential("mock_anthropic") == "from-env"
    assert settings.upstream_credential("mock") is None
    assert settings.admin_token == "tok"
    assert upstream_env_name("mock_anthropic") == "LIME_UPSTREAM_KEY_MOCK_ANTHROPIC"


def test_an_upstream_id_with_a_dash_finds_its_variable() -> None:
    settings = Settings.from_env({upstream_env_name("new-api"): "sk-1"})
    assert upstream_env_name("new-api") == "LIME_UPSTREAM_KEY_NEW_API"
    assert settings.upstream_credential("new-api") == "sk-1"


def test_secrets_stay_out_of_repr() -> None:
    settings = Settings.from_env({"LIME_UPSTREAM_KEY_MOCK": "sk-secret", "LIME_ADMIN_TOKEN": "adm-secret"})
    assert "sk-secret" not in repr(settings) and "adm-secret" not in repr(settings)


def test_a_unix_socket_address() -> None:
    settings = Settings.from_env({"LIME_EXTPROC_ADDR": "unix:/var/run/lime/extproc.sock"})
    assert settings.extproc.is_unix and settings.extproc.path == "/var/run/lime/extproc.sock"
    assert str(settings.extproc) == "unix:/var/run/lime/extproc.sock"  # what grpc binds
    with pytest.raises(SettingsError, match="LIME_AUTHZ_ADDR must look like unix:/absolute/path"):
        Settings.from_env({"LIME_AUTHZ_ADDR": "unix:relative.sock"})


@pytest.mark.parametrize("address", ["0.0.0.0:9901", "10.0.0.3:9901", "envoy:9901", "[::]:9901"])
def test_envoy_admin_must_stay_off_the_network(address: str) -> None:
    with pytest.raises(SettingsError, match="LIME_ENVOY_ADMIN_ADDR must be a loopback address"):
        Settings.from_env({"LIME_ENVOY_ADMIN_ADDR": address})


@pytest.mark.parametrize("address", ["127.0.0.1:9901", "127.0.0.9:1", "[::1]:9901", "localhost:9901",
                                     "unix:/run/envoy/admin.sock"])
def test_envoy_admin_on_loopback_or_a_socket(address: str) -> None:
    assert str(Settings.from_env({"LIME_ENVOY_ADMIN_ADDR": address}).envoy_admin) == address.replace("[::1]", "::1")


def test_the_catalog_secret_from_env_or_file_and_never_in_repr(tmp_path: Path) -> None:
    assert Settings.from_env({}).catalog_secret is None
    assert Settings.from_env({"LIME_CATALOG_SECRET": "from-env"}).catalog_secret == "from-env"
    (tmp_path / "catalog_secret").write_text("from-file\n")
    settings = Settings.from_env({"LIME_CATALOG_SECRET": "from-env", "LIME_SECRETS_DIR": str(tmp_path)})
    assert settings.catalog_secret == "from-file"
    assert "from-file" not in repr(settings)
