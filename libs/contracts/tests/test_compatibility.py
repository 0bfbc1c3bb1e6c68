"""Published schemas must not break; these tests also try each kind of break on purpose."""

from __future__ import annotations

from typing import ClassVar

import pytest
from contracts.base import Event
from contracts.compat import breaking_changes
from contracts.inventory.v1 import ReserveStock
from contracts.registry import ALL, BY_TYPE
from contracts.schemas import published, schema_of
from pydantic import BaseModel


@pytest.mark.parametrize("contract", ALL, ids=lambda c: c.message_type())
def test_every_contract_is_published_and_compatible(contract: type[Event]) -> None:
    old = published(contract)
    assert old is not None, f"{contract.message_type()} has no published schema: " \
                            "run `.venv/bin/python -m contracts export` and commit it"
    assert breaking_changes(old, schema_of(contract)) == []


def test_names_subjects_and_types() -> None:
    assert ReserveStock.subject() == "inventory.commands.reserve_stock"
    assert ReserveStock.message_type() == "ReserveStock.v1"
    assert BY_TYPE["ProductCreated.v1"].subject() == "catalog.events.product_created"
    assert len(BY_TYPE) == len(ALL)


class V1(Event):
    owner: ClassVar[str] = "demo"
    sku: str
    quantity: int
    note: str | None = None


def schema(model: type[BaseModel]) -> dict:
    return model.model_json_schema()


def test_removing_a_field_breaks() -> None:
    class V1b(Event):
        sku: str
        note: str | None = None

    assert any("'quantity' was removed" in p for p in breaking_changes(schema(V1), schema(V1b)))


def test_renaming_a_field_breaks() -> None:
    class V1b(Event):
        sku: str
        qty: int
        note: str | None = None

    problems = breaking_changes(schema(V1), schema(V1b))
    assert any("'quantity' was removed" in p for p in problems)
    assert any("new field 'qty' is required" in p for p in problems)


def test_changing_a_type_breaks() -> None:
    class V1b(Event):
        sku: str
        quantity: str
        note: str | None = None

    assert any("'quantity' changed type" in p for p in breaking_changes(schema(V1), schema(V1b)))


def test_making_an_optional_field_required_breaks() -> None:
    class V1b(Event):
        sku: str
        quantity: int
        note: str

    problems = breaking_changes(schema(V1), schema(V1b))
    assert any("'note' became required" in p or "'note' changed type" in p for p in problems)


def test_adding_an_optional_field_is_compatible() -> None:
    class V1b(Event):
        sku: str
        quantity: int
        note: str | None = None
        gift_wrap: bool = False

    assert breaking_changes(schema(V1), schema(V1b)) == []


def test_a_breaking_change_to_a_published_contract_is_caught() -> None:
    """The real check over the real published schema, with one field dropped."""
    old = published(ReserveStock)
    assert old is not None
    new = schema_of(ReserveStock)
    del new["properties"]["lines"]
    assert breaking_changes(old, new) == ["root: field 'lines' was removed"]


def test_older_consumers_ignore_unknown_fields() -> None:
    parsed = V1.model_validate({"sku": "A", "quantity": 1, "added_later": True})
    assert parsed.sku == "A"


def test_authorize_payment_v2_carries_a_token_on_the_v1_subject() -> None:
    from contracts.payments import v1, v2

    assert BY_TYPE["AuthorizePayment.v2"] is v2.AuthorizePayment
    assert BY_TYPE["AuthorizePayment.v1"] is v1.AuthorizePayment
    assert v2.AuthorizePayment.subject() == v1.AuthorizePayment.subject()
    fields = set(v2.AuthorizePayment.model_fields)
    assert "card_number" not in fields
    assert {"payment_method_id", "card_last4", "customer_id"} <= fields
