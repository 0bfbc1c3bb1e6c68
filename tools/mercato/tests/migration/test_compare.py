"""The shadow comparison's normaliser: known differences vanish, real ones are named."""

from __future__ import annotations

import copy

from acl_standins import LEGACY_PRODUCTS
from mercato.migration.compare import MismatchLog, compare, normalise, route_label
from mercato.migration.translate import Answer


def _page(items: list[dict[str, object]]) -> dict[str, object]:
    return {"items": items, "total": len(items), "page": 1, "page_size": 20}


def test_known_differences_are_not_mismatches() -> None:
    other = copy.deepcopy(LEGACY_PRODUCTS)[::-1]  # another order
    for p in other:
        p["in_stock"] = 0  # stock moved between the two reads
        p["price"]["amount"] = p["price"]["amount"].removesuffix(".00")  # type: ignore[index]
    assert compare(Answer(200, _page(LEGACY_PRODUCTS)), Answer(200, _page(other))) == []


def test_a_real_difference_is_named_by_its_path() -> None:
    other = copy.deepcopy(LEGACY_PRODUCTS)
    other[1]["name"] = "Renamed"
    other[2]["price"] = {"amount": "9001", "currency": "KRW"}
    found = compare(Answer(200, _page(LEGACY_PRODUCTS)), Answer(200, _page(other)))
    assert found == ["$.items[1].name: 'Product 8' (legacy) != 'Renamed' (services)",
                     "$.items[2].price.amount: '9000' (legacy) != '9001' (services)"]


def test_missing_items_and_keys_are_mismatches() -> None:
    found = compare(Answer(200, _page(LEGACY_PRODUCTS)), Answer(200, _page(LEGACY_PRODUCTS[:2])))
    assert found[0] == "$.items: 3 items on the legacy side, 2 on the services side"
    assert "$.total: 3 (legacy) != 2 (services)" in found
    extra = {**LEGACY_PRODUCTS[0], "colour": "red"}
    assert compare(Answer(200, LEGACY_PRODUCTS[0]), Answer(200, extra)) == [
        "$.colour: only on the services side"]


def test_pages_of_a_longer_list_compare_the_records_both_hold() -> None:
    def page(items: list[dict[str, object]], total: int) -> dict[str, object]:
        return {"items": items, "total": total, "page": 1, "page_size": 2}

    a, b, c = copy.deepcopy(LEGACY_PRODUCTS)
    # The monolith pages by id, the catalog by name: page 1 holds other records.
    assert compare(Answer(200, page([a, b], 3)), Answer(200, page([b, c], 3))) == []
    renamed = {**b, "name": "Renamed"}
    assert compare(Answer(200, page([a, b], 3)), Answer(200, page([renamed, c], 3))) == [
        "$.items[0].name: 'Product 8' (legacy) != 'Renamed' (services)"]
    # A record missing on one side still shows, in the total.
    assert compare(Answer(200, page([a, b], 3)), Answer(200, page([b, c], 2))) == [
        "$.total: 3 (legacy) != 2 (services)"]


def test_a_switched_off_product_is_shown_inactive_by_one_side_and_gone_from_the_other() -> None:
    off = {**LEGACY_PRODUCTS[0], "active": False}
    assert compare(Answer(200, off), Answer(404, {"title": "Not Found"})) == []
    assert compare(Answer(200, LEGACY_PRODUCTS[0]), Answer(404, {})) == [
        "status 200 (legacy) != 404 (services)"]


def test_statuses_decide_for_errors() -> None:
    assert compare(Answer(404, {"title": "No such product"}), Answer(404, {"detail": "x"})) == []
    assert compare(Answer(200, {}), Answer(404, {})) == [
        "status 200 (legacy) != 404 (services)"]
    assert compare(Answer(200, {}), Answer(0, None, error="ClientConnectorError"))[0].startswith(
        "no answer")


def test_normalise_keeps_amounts_exact() -> None:
    assert normalise({"amount": "12900.50", "currency": "KRW"}) == {"amount": "12900.5",
                                                                     "currency": "KRW"}
    assert normalise({"amount": "12900.00", "currency": "KRW"}) == {"amount": "12900",
                                                                     "currency": "KRW"}


def test_routes_are_labelled_without_ids() -> None:
    assert route_label("/shop/products/42") == "/shop/products/{id}"
    assert route_label("/shop/products") == "/shop/products"


def test_the_mismatch_log_is_bounded_and_newest_first() -> None:
    log = MismatchLog(keep=2)
    for n in range(3):
        log.add("catalog", f"/shop/products/{n}", "legacy", Answer(200, {"n": n}),
                Answer(200, {"n": -n}), ["x"])
    recent = log.recent()
    assert [m["path"] for m in recent] == ["/shop/products/2", "/shop/products/1"]
    assert recent[0]["legacy"]["body"] == {"n": 2} and recent[0]["services"]["body"] == {"n": -2}
    assert log.recent("cart") == []


def test_identity_records_compare_by_their_services_id() -> None:
    sid = "6c656761-0003-8000-8000-000000000029"
    legacy_me = {"id": 41, "email": "Ann@Example.com", "name": "Ann", "is_admin": True,
                 "services_id": sid}
    services_me = {"id": None, "email": "ann@example.com", "name": "Ann", "is_admin": False,
                   "services_id": sid}
    assert compare(Answer(200, legacy_me), Answer(200, services_me)) == []
    assert compare(Answer(200, legacy_me), Answer(200, {**services_me, "name": "Bo"})) == [
        "$.name: 'Ann' (legacy) != 'Bo' (services)"]
    assert compare(Answer(200, legacy_me), Answer(200, {**services_me, "services_id": "x"}))
    a = {"id": 7, "recipient": "Ann", "line1": "1", "city": "Seoul", "postal_code": "04100",
         "country": "KR", "services_id": "b"}
    b = {**a, "id": 8, "line1": "2", "services_id": "a"}
    # Another order, and the services-born one without a legacy id on the services side.
    assert compare(Answer(200, [a, b]), Answer(200, [{**b, "id": None}, a])) == []
    found = compare(Answer(200, [a, b]), Answer(200, [{**b, "city": "Busan"}, a]))
    assert found == ["$[0].city: 'Seoul' (legacy) != 'Busan' (services)"]
    assert compare(Answer(200, [a, b]), Answer(200, [a]))
