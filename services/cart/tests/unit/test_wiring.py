import pytest
from cart.app import create_app, messaging
from cart.settings import CartSettings


def test_settings_come_from_cart_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = CartSettings()
    assert (defaults.catalog_url, defaults.orders_url) == ("http://catalog", "http://orders")
    assert defaults.api_prefix == "/api/cart"
    # Every attempt on orders together stays under the edge's 15 s route timeout.
    assert defaults.orders_timeout_s * (1 + defaults.upstream_retries) < 15
    monkeypatch.setenv("CART_ORDERS_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("ORDERS_CATALOG_URL", "http://elsewhere")
    assert CartSettings().orders_url == "http://127.0.0.1:9"
    assert CartSettings().catalog_url == "http://catalog"


def test_placeholder_database_password_is_refused_outside_development() -> None:
    with pytest.raises(ValueError, match="placeholder"):
        CartSettings(environment="production",
                     database_url="postgresql+asyncpg://cart:changeme@db/cart")


def test_cart_publishes_nothing_and_follows_the_catalog() -> None:
    spec = messaging(CartSettings())
    assert spec.outbox is False and spec.streams == []
    [consumer] = spec.consumers
    assert consumer.stream == "CATALOG_EVENTS"
    assert all(s.startswith("catalog.events.") for s in consumer.subjects)
    assert len(consumer.subjects) == len(consumer.handlers)


def test_the_public_api_is_the_designed_one() -> None:
    paths = create_app(CartSettings(nats_url="")).openapi()["paths"]
    assert {p: sorted(paths[p]) for p in paths} == {
        "/api/cart": ["get"], "/api/cart/items/{product_id}": ["delete", "put"],
        "/api/cart/checkout": ["post"]}
