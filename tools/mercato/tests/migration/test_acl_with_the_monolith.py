"""The ACL against the real monolith (its own process on an embedded PostgreSQL database):
after a backfill-like copy of its products into the services' shapes, shadowed reads agree
after normalisation, and answers built from the services equal the monolith's own."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterator
from typing import Any

import aiohttp
import asyncpg
import pytest
from acl_standins import Side, serve, services_app
from legacy.migrate import upgrade_to_head
from mercato.migration.acl import Acl
from mercato.migration.compare import compare
from mercato.migration.ids import services_id
from mercato.migration.routes import CAPABILITY, PRIMARY, SHADOW
from mercato.migration.translate import Answer
from mercato.runtime.paths import free_port
from mercato.testing.infra import serving

pytestmark = pytest.mark.integration


async def _sql(url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url.replace("+asyncpg", ""))
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


@pytest.fixture
def monolith(fresh_database: str) -> Iterator[tuple[str, str]]:
    upgrade_to_head(fresh_database)

    async def fill() -> None:
        books, games = [r["id"] for r in await _sql(
            fresh_database, "INSERT INTO categories (name) VALUES ('Books'), ('Games') "
            "RETURNING id")]
        for n, (cat, price, on_hand) in enumerate([(books, "12900", 5), (books, "990.50", 0),
                                                   (games, "45000", 12)]):
            pid = (await _sql(fresh_database, "INSERT INTO products (sku, name, category_id, "
                              "price, description) VALUES ($1, $2, $3, $4::numeric, $5) "
                              "RETURNING id", f"SKU-{n}", f"Product {n}", cat, price,
                              "" if n else "A long story"))[0]["id"]
            await _sql(fresh_database, "INSERT INTO stock (product_id, on_hand) VALUES ($1, $2)",
                       pid, on_hand)

    asyncio.run(fill())
    port = free_port()
    env = {**os.environ, "LEGACY_DATABASE_URL": fresh_database, "LEGACY_PORT": str(port),
           "LEGACY_OTLP_ENDPOINT": ""}
    with serving([sys.executable, "-m", "legacy"], env, f"http://127.0.0.1:{port}/health/ready"):
        yield f"http://127.0.0.1:{port}", fresh_database


async def _backfill(database_url: str, side: Side) -> None:
    """What the sync's backfill (issue 15 item 4) leaves in the services: each legacy row
    under its derived id, in the services' shapes."""
    cats = await _sql(database_url, "SELECT id, name FROM categories")
    side.categories = [{"id": str(services_id("categories", c["id"])),
                        "slug": c["name"].lower(), "name": c["name"]} for c in cats]
    slug = {c["id"]: c["name"].lower() for c in cats}
    rows = await _sql(database_url, "SELECT p.*, s.on_hand FROM products p JOIN stock s ON "
                      "s.product_id = p.id ORDER BY p.id")
    side.services = [{"id": str(services_id("products", r["id"])), "sku": r["sku"],
                      "name": r["name"], "description": r["description"],
                      "category": slug[r["category_id"]],
                      "price": {"amount": str(r["price"].normalize()), "currency": r["currency"]},
                      "status": "active" if r["active"] else "discontinued", "version": 1,
                      "created_at": "2026-01-01T00:00:00+00:00",
                      "updated_at": "2026-01-01T00:00:00+00:00"} for r in rows]
    side.stock = {r["sku"]: r["on_hand"] for r in rows}


async def test_backfilled_catalog_reads_agree_with_the_monolith(
        monolith: tuple[str, str]) -> None:
    legacy_url, database_url = monolith
    services = Side()
    await _backfill(database_url, services)
    books = (await _sql(database_url, "SELECT id FROM categories WHERE name = 'Books'"))[0]["id"]
    first = (await _sql(database_url, "SELECT min(id) AS id FROM products"))[0]["id"]
    paths = ["/shop/products", f"/shop/products?category={books}&page_size=1",
             "/shop/products?q=product%202", f"/shop/products/{first}", "/shop/categories",
             "/shop/products/999999", "/shop/products?category=999"]
    async with serve(services_app(services)) as surl:
        acl = Acl(legacy_url=legacy_url, services_url=surl)
        async with serve(acl.app()) as url, aiohttp.ClientSession() as http:
            for path in paths:
                answers = {}
                for primary in ("legacy", "services"):
                    headers = {PRIMARY: primary, SHADOW: "1", CAPABILITY: "catalog"}
                    async with http.get(url + path, headers=headers) as resp:
                        answers[primary] = Answer(resp.status,
                                                  await resp.json(content_type=None))
                assert compare(answers["legacy"], answers["services"]) == [], path
                while acl.shadows:
                    await asyncio.gather(*acl.shadows)
            assert acl.mismatches.recent() == []
            async with http.get(url + "/metrics") as resp:
                text = await resp.text()
    assert 'acl_shadow_comparisons_total{capability="catalog",route="/shop/products"} 8.0' \
        in text
