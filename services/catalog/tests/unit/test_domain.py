from decimal import Decimal

import pytest
from catalog.adapters.repository import prefix_tsquery
from catalog.domain.model import DISCONTINUED, CatalogError, Category, Money, Product


def test_money_parses_krw_without_minor_units() -> None:
    assert Money.parse("12900", "krw") == Money(Decimal("12900"), "KRW")
    assert Money.parse(12900, "KRW").as_dict() == {"amount": "12900", "currency": "KRW"}


@pytest.mark.parametrize("amount", ["0", "-5", "12.5", "abc", "1e20", "NaN"])
def test_money_refuses_bad_krw_amounts(amount: str) -> None:
    with pytest.raises(CatalogError):
        Money.parse(amount, "KRW")


def test_money_allows_cents_where_the_currency_has_them() -> None:
    assert Money.parse("12.50", "USD").as_dict() == {"amount": "12.50", "currency": "USD"}
    with pytest.raises(CatalogError):
        Money.parse("12.505", "USD")
    with pytest.raises(CatalogError, match="unsupported currency"):
        Money.parse("1", "XXX")


def test_product_new_normalises_sku_and_refuses_bad_ones() -> None:
    p = Product.new(sku=" ab-12 ", name=" Mug ", description="", category="kitchen",
                    price=Money.parse("9000", "KRW"))
    assert (p.sku, p.name, p.version) == ("AB-12", "Mug", 1)
    with pytest.raises(CatalogError):
        Product.new(sku="a b", name="x", description="", category="k",
                    price=Money.parse("1", "KRW"))


def test_changes_bump_version_and_etag() -> None:
    p = Product.new(sku="MUG-1", name="Mug", description="", category="kitchen",
                    price=Money.parse("9000", "KRW"))
    q = p.changed(price=Money.parse("9500", "KRW"))
    assert q.version == 2 and q.price.amount == Decimal("9500") and q.etag != p.etag
    gone = q.discontinued()
    assert gone.status == DISCONTINUED
    with pytest.raises(CatalogError):
        gone.changed(name="again")


def test_category_slug_rules() -> None:
    assert Category.new("tea-cups", "Tea cups").slug == "tea-cups"
    with pytest.raises(CatalogError):
        Category.new("Tea Cups", "x")


def test_prefix_tsquery_keeps_words_only() -> None:
    assert prefix_tsquery("Red  sho!") == "red:* & sho:*"
    assert prefix_tsquery("'); drop table --") == "drop:* & table:*"
    assert prefix_tsquery("%%%") is None


def test_a_record_stated_again_is_the_same_version_and_a_product_may_come_back() -> None:
    p = Product.new(sku="lg-1", name="Kettle", description="", category="kitchen",
                    price=Money.parse("39000", "KRW"))
    same = p.recorded(name=" Kettle ", description="", category="kitchen", price=p.price,
                      status="active")
    assert same is p and same.version == 1
    off = p.recorded(name="Kettle", description="", category="kitchen", price=p.price,
                     status=DISCONTINUED)
    assert off.status == DISCONTINUED and off.version == 2
    back = off.recorded(name="Kettle", description="", category="kitchen", price=p.price,
                        status="active")
    assert back.status == "active" and back.version == 3
    with pytest.raises(CatalogError):
        p.recorded(name="Kettle", description="", category="kitchen", price=p.price,
                   status="gone")
    with pytest.raises(CatalogError):
        p.recorded(name="  ", description="", category="kitchen", price=p.price,
                   status="active")
