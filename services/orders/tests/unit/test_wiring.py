import pytest
from chassis.saga import SagaEngine
from orders.app import messaging
from orders.service_layer.saga import DEFINITIONS
from orders.settings import OrdersSettings


def test_settings_come_from_orders_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = OrdersSettings()
    assert (defaults.identity_url, defaults.catalog_url) == ("http://identity", "http://catalog")
    assert defaults.upstream_timeout_s == 2.0 and defaults.api_prefix == "/api/orders"
    monkeypatch.setenv("ORDERS_CATALOG_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("SHIPPING_CATALOG_URL", "http://elsewhere")
    assert OrdersSettings().catalog_url == "http://127.0.0.1:9"


def test_placeholder_database_password_is_refused_outside_development() -> None:
    with pytest.raises(ValueError, match="placeholder"):
        OrdersSettings(environment="production",
                       database_url="postgresql+asyncpg://orders:changeme@db/orders")


def test_the_card_fingerprint_secret_is_required_outside_development() -> None:
    real_db = "postgresql+asyncpg://orders:a-real-password@db/orders"
    with pytest.raises(ValueError, match="ORDERS_CARD_FINGERPRINT_SECRET"):
        OrdersSettings(environment="production", database_url=real_db)
    keyed = OrdersSettings(environment="production", database_url=real_db,
                           card_fingerprint_secret="from the vault")
    assert keyed.card_fingerprint_key == b"from the vault"
    assert OrdersSettings().card_fingerprint_key is None  # development may go without
    assert OrdersSettings().payments_url == "http://payments"


def test_messaging_reads_every_reply_of_the_saga_once_one_consumer_per_stream() -> None:
    spec = messaging(OrdersSettings(), SagaEngine(DEFINITIONS))
    assert spec.outbox is True
    assert {s.name: s.subjects for s in spec.streams} == {"ORDERS_EVENTS": ["orders.events.>"]}
    by_stream = {c.stream: c for c in spec.consumers}
    assert set(by_stream) == {"INVENTORY_EVENTS", "PAYMENTS_EVENTS", "SHIPPING_EVENTS",
                              "CATALOG_EVENTS", "IDENTITY_EVENTS"}
    assert len({c.name for c in spec.consumers}) == 5
    replicas = ("CATALOG_EVENTS", "IDENTITY_EVENTS")
    replies = [t for c in spec.consumers if c.stream not in replicas for t in c.handlers]
    cancel_answers = ["ShipmentCancelled.v1", "ShipmentCancellationRefused.v1"]
    # The replies of both definitions: sagas an older release started still get theirs.
    awaited = {t for d in DEFINITIONS for t in d.reply_types()}
    assert "PaymentAuthorized.v1" in awaited
    assert sorted(replies) == sorted([*awaited, *cancel_answers])
    # The replica of the catalog's products (ADR 0036): every event that changes a price,
    # a name or whether a product is sold.
    catalog = by_stream["CATALOG_EVENTS"]
    assert catalog.name == "orders-catalog-events"
    assert sorted(catalog.handlers) == ["PriceChanged.v1", "ProductCreated.v1",
                                        "ProductDiscontinued.v1", "ProductUpdated.v1"]
    identity = by_stream["IDENTITY_EVENTS"]
    assert identity.name == "orders-identity-events"
    assert sorted(identity.handlers) == ["AddressAdded.v1", "AddressUpdated.v1"]
    for c in spec.consumers:
        producer = c.stream.split("_")[0].lower()
        assert all(s.startswith(f"{producer}.events.") for s in c.subjects)
        assert len(c.subjects) == len(c.handlers)
