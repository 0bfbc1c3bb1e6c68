from email import message_from_bytes, policy
from pathlib import Path

import pytest
from chassis.messaging.envelope import Envelope, PoisonMessage, parse_payload
from contracts.orders.v1 import (
    OrderApproved,
    OrderCancelled,
    OrderLine,
    OrderPlaced,
    OrderRejected,
)
from contracts.shipping.v1 import ShipmentStatusChanged
from notifications.adapters.smtp import H_NOTIFICATION, OutgoingMail, build_message
from notifications.app import messaging
from notifications.domain.model import (
    ORDER_APPROVED,
    ORDER_CANCELLED,
    ORDER_PLACED,
    ORDER_REJECTED,
)
from notifications.service_layer.handlers import order_facts
from notifications.settings import NotificationsSettings
from simulators.mail_sink import MessageStore, SinkSettings


def test_settings_come_from_notifications_prefixed_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = NotificationsSettings()
    assert (defaults.smtp_host, defaults.smtp_port) == ("127.0.0.1", 8025)
    assert defaults.api_prefix == "/api/notifications" and defaults.sink_http_url == ""
    monkeypatch.setenv("NOTIFICATIONS_SMTP_PORT", "2525")
    monkeypatch.setenv("NOTIFICATIONS_MAIL_FROM", "shop@example.com")
    monkeypatch.setenv("NOTIFICATIONS_MAX_ATTEMPTS", "3")
    monkeypatch.setenv("SHIPPING_SMTP_PORT", "99")
    s = NotificationsSettings()
    assert (s.smtp_port, s.mail_from, s.retry_policy().max_attempts) == (
        2525, "shop@example.com", 3)


def test_sink_settings_have_their_own_prefix(monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    monkeypatch.setenv("NOTIFICATIONS_SINK_HOST", "0.0.0.0")
    monkeypatch.setenv("NOTIFICATIONS_SINK_SMTP_PORT", "2526")
    monkeypatch.setenv("NOTIFICATIONS_SINK_HTTP_PORT", "2527")
    monkeypatch.setenv("NOTIFICATIONS_SINK_DATA_DIR", str(tmp_path))
    s = SinkSettings()
    assert (s.host, s.smtp_port, s.http_port, s.data_dir) == ("0.0.0.0", 2526, 2527, tmp_path)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        NotificationsSettings(max_attempts=0)
    with pytest.raises(ValueError, match="placeholder"):
        NotificationsSettings(environment="production",
                              database_url="postgresql+asyncpg://n:changeme@db/notifications")


def test_messaging_consumes_only_the_events_it_mails_about() -> None:
    spec = messaging(NotificationsSettings())
    assert spec.outbox is False and spec.streams == []
    by_name = {c.name: c for c in spec.consumers}
    orders, shipping = by_name["notifications-orders"], by_name["notifications-shipping"]
    assert orders.stream == "ORDERS_EVENTS" and shipping.stream == "SHIPPING_EVENTS"
    assert sorted(orders.subjects) == sorted(m.subject() for m in (
        OrderPlaced, OrderApproved, OrderRejected, OrderCancelled))
    assert all(s.startswith("orders.events.") for s in orders.subjects)
    assert shipping.subjects == ["shipping.events.shipment_status_changed"]
    assert set(orders.handlers) == {"OrderPlaced.v1", "OrderApproved.v1", "OrderRejected.v1",
                                    "OrderCancelled.v1"}
    assert set(shipping.handlers) == {ShipmentStatusChanged.message_type()}


def test_each_order_event_maps_to_one_kind_per_order() -> None:
    line = OrderLine(product_id="p", sku="MUG", name="Mug", quantity=2, unit_price="10")
    events = [OrderPlaced(order_id="o1", customer_id="c", lines=[line, line], total="40",
                          currency="KRW"),
              OrderApproved(order_id="o1", customer_id="c", total="40", currency="KRW"),
              OrderRejected(order_id="o1", customer_id="c", reason="out_of_stock"),
              OrderCancelled(order_id="o1", customer_id="c")]
    kinds = [order_facts(e)[0] for e in events]
    assert kinds == [ORDER_PLACED, ORDER_APPROVED, ORDER_REJECTED, ORDER_CANCELLED]
    # The same event again (e.g. re-published under a new id) names the same (order, kind).
    assert order_facts(events[0]) == order_facts(events[0].model_copy())
    assert order_facts(events[0])[1].items == 4


def test_an_invalid_event_is_poison() -> None:
    env = Envelope.new(OrderPlaced.subject(), OrderPlaced.message_type(), {"order_id": "o1"})
    with pytest.raises(PoisonMessage):
        parse_payload(OrderPlaced, env)


def test_the_email_names_its_notification_and_survives_the_sink(tmp_path: Path) -> None:
    long_order = "o-" + "9" * 90  # the header is folded on the wire; the sink unfolds it
    msg = build_message(OutgoingMail(7, long_order, "order_placed", "kim@example.com", "Héllo",
                                     "line one\nline two\n"), "shop <shop@example.com>")
    assert msg["Message-ID"] == "<notification-7@notifications.mercato.local>"
    assert msg[H_NOTIFICATION] == f"{long_order}/order_placed"
    store = MessageStore(tmp_path / "sink" / "m.sqlite3")
    store.add(mail_from="shop@example.com", to=["Kim@example.com"], raw=msg.as_bytes())
    [got] = store.listing()
    assert (got["subject"], got["body"], got["to"], got["notification"]) == (
        "Héllo", "line one\nline two\n", ["Kim@example.com"], f"{long_order}/order_placed")
    assert store.listing(to="kim@example.com") == [got]
    assert store.listing(to="other@example.com") == []
    assert message_from_bytes(msg.as_bytes())["To"] == "kim@example.com"
    store.close()


def test_names_and_subjects_in_any_script_are_encoded_words_and_read_back() -> None:
    """compat32 (ADR 0038) puts non-ASCII header text on the wire as RFC 2047 words and the
    body as quoted-printable UTF-8: 7-bit, whatever the server supports."""
    msg = build_message(OutgoingMail(8, "o1", "order_placed", "kim@example.com",
                                     "Bestätigt: Grüntee ✓", "Grüße\n"),
                        "Bücherladen Müller <shop@example.com>")
    raw = msg.as_bytes()
    assert raw.isascii()
    parsed = message_from_bytes(raw, policy=policy.default)
    assert str(parsed["Subject"]) == "Bestätigt: Grüntee ✓"
    assert parsed["From"].addresses[0].display_name == "Bücherladen Müller"
    assert parsed["From"].addresses[0].addr_spec == "shop@example.com"
    assert parsed.get_content() == "Grüße\n"


@pytest.mark.parametrize("cte", ["8bit", "base64", "quoted-printable"])
def test_the_sink_reads_mail_of_other_senders_too(tmp_path: Path, cte: str) -> None:
    """The sink decodes by hand (ADR 0038): any transfer encoding, a multipart with an HTML
    alternative, a subject in RFC 2047 words, folded."""
    from email.message import EmailMessage

    msg = EmailMessage()
    msg["Subject"] = "Votre commande n° 42 est confirmée — " + "très " * 15
    msg["X-Mercato-Notification"] = "o42/order_placed"
    msg.set_content("Grüße, Zoë\n.\n", cte=cte)
    msg.add_alternative("<p>Grüße</p>", subtype="html")
    store = MessageStore(tmp_path / "m.sqlite3")
    store.add(mail_from="legacy@example.com", to=["zoe@example.com"],
              raw=msg.as_bytes(policy=policy.SMTPUTF8 if cte == "8bit" else policy.SMTP))
    [got] = store.listing()
    assert got["subject"] == " ".join(str(msg["Subject"]).split())
    assert got["body"] == "Grüße, Zoë\n.\n"
    assert got["notification"] == "o42/order_placed"
    store.close()
