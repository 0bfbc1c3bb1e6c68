"""routes.yaml parsing: the packaged table, and refusing anything ambiguous."""

from __future__ import annotations

from pathlib import Path

import pytest
from mercato.gateway.routes import (
    PUBLIC,
    USER,
    Bucket,
    RateLimit,
    RoutesError,
    RouteTable,
    default_routes_file,
    load_routes,
    parse_routes,
)


def _doc(*routes: dict[str, object]) -> dict[str, object]:
    return {"routes": list(routes)}


def _written(table: RouteTable) -> list[str]:
    """The entries of the file, without the generated docs routes."""
    return [r.match for r in table.routes
            if not r.match.endswith(("/docs/*", "/openapi.json"))]


def test_packaged_routes_cover_the_public_api() -> None:
    table = load_routes()
    by_match = {r.match: r for r in table.routes}
    assert by_match["/.well-known/jwks.json"].service == "identity"
    assert by_match["/api/identity/*"].read_auth == PUBLIC
    # The OAuth 2 sign-in page and its form: the person has no token yet.
    authorize = by_match["/api/identity/authorize"]
    assert (authorize.read_auth, authorize.write_auth) == (PUBLIC, PUBLIC)
    me = by_match["/api/identity/me/*"]
    assert (me.read_auth, me.write_auth) == (USER, USER)
    catalog = by_match["/api/catalog/*"]
    assert (catalog.service, catalog.read_auth, catalog.write_auth) == ("catalog", PUBLIC, USER)
    # Writes that cost a hash or a saga are limited per client, under a total ceiling.
    for limited in ("/api/identity/token/*", "/api/identity/register",
                    "/api/identity/authorize", "/api/orders",
                    "/api/cart/checkout", "/api/payments/payment-methods"):
        rl = by_match[limited].rate_limit
        assert rl is not None and rl.per_client is not None and rl.total is not None, limited
        assert rl.total.per_second >= 10 * rl.per_client.per_second, limited
    assert all(r.max_body_bytes == 1 << 20 and r.timeout_s == 15 for r in table.routes)
    inventory = by_match["/api/inventory/*"]
    assert (inventory.read_auth, inventory.write_auth) == (PUBLIC, USER)
    track = by_match["/api/shipping/track/*"]
    assert (track.service, track.read_auth) == ("shipping", PUBLIC)
    assert by_match["/api/shipping/*"].read_auth == USER
    assert by_match["/api/payments/*"].read_auth == USER
    assert table.services == tuple(sorted({r.service for r in table.routes}))
    assert table.jwt.issuer == "mercato-identity" and table.jwt.audiences == ("mercato",)


def test_most_specific_route_comes_first_whatever_the_file_order() -> None:
    table = parse_routes(_doc(
        {"prefix": "/api/identity", "service": "identity"},
        {"prefix": "/api/identity/me", "service": "identity", "auth": "user"},
        {"path": "/.well-known/jwks.json", "service": "identity"},
        {"prefix": "/", "service": "storefront"},
    ))
    assert _written(table) == [
        "/.well-known/jwks.json", "/api/identity/me/*", "/api/identity/*", "//*"]


def test_trailing_slash_on_a_prefix_means_the_same_subtree() -> None:
    table = parse_routes(_doc({"prefix": "/api/catalog/", "service": "catalog"}))
    assert _written(table) == ["/api/catalog/*"]


def test_a_new_service_is_one_line(tmp_path: Path) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(default_routes_file().read_text()
                      + "  - {prefix: /api/wishlist, service: wishlist, auth: user}\n")
    table = load_routes(routes)
    assert "wishlist" in table.services
    wishlist = next(r for r in table.routes if r.match == "/api/wishlist/*")
    assert (wishlist.read_auth, wishlist.write_auth) == (USER, USER)


def test_the_packaged_routes_send_the_cart_to_the_cart_service_for_users_only() -> None:
    cart = [r for r in load_routes().routes if r.service == "cart"]
    assert [(r.match, r.read_auth, r.write_auth) for r in cart] == [
        ("/api/cart/openapi.json", PUBLIC, USER), ("/api/cart/checkout", USER, USER),
        ("/api/cart/docs/*", PUBLIC, USER), ("/api/cart/*", USER, USER)]


def test_every_services_docs_and_openapi_document_are_public_to_read() -> None:
    table = load_routes()
    by_match = {r.match: r for r in table.routes}
    roots = {"identity": "/api/identity", "catalog": "/api/catalog",
             "inventory": "/api/inventory", "cart": "/api/cart", "orders": "/api/orders",
             "payments": "/api/payments", "shipping": "/api/shipping",
             "notifications": "/api/notifications", "order_history": "/api/history"}
    for service, root in roots.items():
        for match in (f"{root}/docs/*", f"{root}/openapi.json"):
            route = by_match[match]
            assert (route.service, route.read_auth, route.write_auth) == (service, PUBLIC, USER)
    # Only the page, its files and the document: the API under the same root is not.
    assert by_match["/api/history/*"].read_auth == USER


def test_docs_routes_are_generated_from_each_services_shortest_prefix() -> None:
    table = parse_routes(_doc(
        {"prefix": "/api/wishlist", "service": "wishlist", "auth": "user"},
        {"prefix": "/api/wishlist/shared", "service": "wishlist", "auth": "public"},
        {"path": "/api/other/openapi.json", "service": "other", "auth": "user"},
        {"prefix": "/api/other", "service": "other", "auth": "user"},
    ))
    by_match = {r.match: r for r in table.routes}
    assert by_match["/api/wishlist/docs/*"].read_auth == PUBLIC
    assert by_match["/api/wishlist/openapi.json"].read_auth == PUBLIC
    assert "/api/wishlist/shared/docs/*" not in by_match
    # An entry written in the file for the same path wins over the generated one.
    assert by_match["/api/other/openapi.json"].read_auth == USER
    assert by_match["/api/other/docs/*"].read_auth == PUBLIC


def test_rate_limits_take_a_per_client_bucket_a_total_bucket_or_both() -> None:
    table = parse_routes(_doc(
        {"path": "/a", "service": "x", "rate_limit": {"per_client": {"per_second": 2}}},
        {"path": "/b", "service": "x", "rate_limit": {"total": {"per_second": 5, "burst": 9}}},
        {"path": "/c", "service": "x", "rate_limit": {"per_client": {"per_second": 1, "burst": 3},
                                                      "total": {"per_second": 50}}},
    ))
    a, b, c = (next(r.rate_limit for r in table.routes if r.path == p) for p in ("/a", "/b", "/c"))
    assert a == RateLimit(per_client=Bucket(2, 2))
    assert b == RateLimit(total=Bucket(5, 9))
    assert c == RateLimit(per_client=Bucket(1, 3), total=Bucket(50, 50))


@pytest.mark.parametrize(("entry", "message"), [
    ({"prefix": "/a", "path": "/b", "service": "x"}, "exactly one of"),
    ({"service": "x"}, "exactly one of"),
    ({"prefix": "/a", "service": "x", "auth": "users"}, "must be one of"),
    ({"prefix": "/a", "service": "x", "auth": {"read": "public"}}, "both `read` and `write`"),
    ({"prefix": "/a", "service": "x", "auht": "user"}, "unknown key"),
    ({"prefix": "a", "service": "x"}, "absolute path"),
    ({"prefix": "/a?b", "service": "x"}, "absolute path"),
    ({"prefix": "/a", "service": "Bad-Name"}, "service name"),
    ({"prefix": "/a", "service": "x", "rate_limit": {"total": {"per_second": 0}}},
     "positive integer"),
    # The old one-bucket form would silently be one bucket over all clients again.
    ({"prefix": "/a", "service": "x", "rate_limit": {"per_second": 5}}, "unknown key"),
    ({"prefix": "/a", "service": "x", "rate_limit": {}}, "per_client"),
    ({"prefix": "/a", "service": "x", "rate_limit": {"per_client": {"per_second": 5},
                                                     "total": {"per_second": 1}}}, "below"),
    ({"prefix": "/a", "service": "x", "max_body_bytes": -1}, "positive integer"),
])
def test_bad_entries_are_refused(entry: dict[str, object], message: str) -> None:
    with pytest.raises(RoutesError, match=message):
        parse_routes(_doc(entry))


def test_duplicate_routes_are_refused() -> None:
    with pytest.raises(RoutesError, match="repeats"):
        parse_routes(_doc({"prefix": "/a", "service": "x"}, {"prefix": "/a/", "service": "y"}))


def test_unreadable_file_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "routes.yaml"
    bad.write_text("routes: [")
    with pytest.raises(RoutesError, match=str(bad)):
        load_routes(bad)
