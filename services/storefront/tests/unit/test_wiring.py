import pytest
from storefront.app import create_app
from storefront.settings import StorefrontSettings


def test_settings_come_from_storefront_prefixed_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = StorefrontSettings()
    assert defaults.history_url == "http://order_history"
    assert defaults.api_prefix == "/api/storefront"
    assert defaults.console_url == ""
    monkeypatch.setenv("STOREFRONT_CONSOLE_URL", "http://127.0.0.1:9999")
    assert StorefrontSettings().console_url == "http://127.0.0.1:9999"


def test_placeholder_session_secret_is_refused_outside_development() -> None:
    with pytest.raises(ValueError, match="placeholder"):
        StorefrontSettings(environment="production", session_secret="changeme")


def test_pages_are_not_part_of_the_api_document() -> None:
    paths = create_app(StorefrontSettings(nats_url="")).openapi()["paths"]
    assert not [p for p in paths if not p.startswith("/api/")]
