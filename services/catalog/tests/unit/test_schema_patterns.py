"""The patterns the published schema gives the catalog's fields accept exactly what the
service accepts (the API fuzzing in tests/api_fuzz relies on it)."""

from __future__ import annotations

import re
import string
import uuid

import pytest
from catalog.domain.model import CURRENCY_EXPONENT, SKU_PATTERN, CatalogError, Money
from catalog.entrypoints import api, schemas
from chassis.errors import Unprocessable
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError


def matches(pattern: str, value: str) -> bool:
    return re.fullmatch(pattern, value) is not None


@settings(max_examples=200)
@given(st.text(st.one_of(st.sampled_from(" \t\n\x1c\x85\xa0\u2028\u3000\ufeffa"),
                         st.characters(exclude_categories=("Cs",))),  # JSON has no lone surrogate
               min_size=1, max_size=10))
@example("\x1c")
@example(" a ")
def test_name_pattern_is_not_only_whitespace(value: str) -> None:
    try:
        name = schemas.CategoryIn(slug="s", name=value).name
        accepted = bool(name.strip())  # Product.new and Category.new strip again
    except ValidationError:
        accepted = False
    assert matches(schemas.NAME, value) == accepted


@settings(max_examples=200)
@given(st.text(st.sampled_from(string.ascii_letters + string.digits + "-_ \t."), min_size=2,
               max_size=12))
@example(" a ")
@example("-A")
def test_sku_pattern_is_the_domains(value: str) -> None:
    assert matches(schemas.SKU, value) == bool(SKU_PATTERN.match(value.strip().upper()))


@settings(max_examples=200)
@given(st.from_regex(r"\A\d{1,13}(\.\d{1,2})?\Z"), st.sampled_from(sorted(CURRENCY_EXPONENT)))
@example("0", "USD")
@example("0.00", "USD")
@example("0.01", "USD")
@example("12.50", "KRW")
@example("12.00", "KRW")
@example("1000000000000", "USD")
@example("0999999999999.99", "EUR")
def test_amount_patterns_are_money_parse(amount: str, currency: str) -> None:
    try:
        money = schemas.MoneyIn(amount=amount, currency=currency)
        Money.parse(money.amount, money.currency)
        accepted = True
    except (ValidationError, CatalogError):
        accepted = False
    pattern = schemas.AMOUNT_WHOLE if CURRENCY_EXPONENT[currency] == 0 else schemas.AMOUNT_CENTS
    assert matches(pattern, amount) == accepted


def test_the_money_schema_picks_the_pattern_by_currency() -> None:
    money = schemas.MoneyIn.model_json_schema()
    assert money["if"]["properties"]["currency"]["enum"] == ["JPY", "KRW"]
    assert money["properties"]["currency"]["enum"] == sorted(CURRENCY_EXPONENT)


@settings(max_examples=200)
@given(st.lists(st.one_of(st.uuids().map(str), st.just(""), st.just(" "),
                          st.text(st.characters(exclude_categories=("Cs",)), max_size=3)),
                min_size=0, max_size=4).map(",".join))
@example(" , ")
@example(f" {uuid.UUID(int=1)} ,, {uuid.UUID(int=2)},")
def test_ids_pattern_is_what_the_list_takes(value: str) -> None:
    try:
        api._product_ids(value)
        accepted = True
    except Unprocessable:
        accepted = False
    # (uuid.UUID also takes spellings without dashes or with braces, which the schema does
    # not promise; random text never spells a UUID.)
    assert matches(api.IDS_PATTERN, value) == accepted


@pytest.mark.parametrize("amount", ["\u0661\u0662\u0660\u0660", "12\u0663", "\uff11\uff12"])
def test_amounts_are_ascii_digits(amount: str) -> None:
    # \d took other scripts' digits, which Decimal reads: Arabic-Indic 1200 was a price.
    with pytest.raises(ValidationError):
        schemas.MoneyIn(amount=amount, currency="KRW")
