from typing import Any

import orjson
from chassis.http_client import ServiceResponse
from storefront.adapters.backends import Backends, Urls


class CountingCatalog:
    """Stands in for the ServiceClient: answers GETs with a product, counting them."""

    def __init__(self, cache_control: str) -> None:
        self.cache_control = cache_control
        self.calls: list[str] = []

    async def get(self, url: str, **_: Any) -> ServiceResponse:
        self.calls.append(url)
        body = orjson.dumps({"id": "p1", "name": f"v{len(self.calls)}"})
        return ServiceResponse(200, {"Cache-Control": self.cache_control}, body)


def backends(client: CountingCatalog, now: list[float]) -> Backends:
    return Backends(client, Urls(), clock=lambda: now[0])  # type: ignore[arg-type]


async def test_public_catalog_reads_are_kept_as_long_as_the_catalog_allows() -> None:
    client, now = CountingCatalog("public, max-age=10"), [100.0]
    b = backends(client, now)
    assert (await b.product("p1"))["name"] == "v1"  # type: ignore[index]
    assert (await b.product("p1"))["name"] == "v1"  # type: ignore[index]
    assert len(client.calls) == 1
    now[0] += 10.5
    assert (await b.product("p1"))["name"] == "v2"  # type: ignore[index]
    # The back office asks the catalog itself.
    assert (await b.product("p1", fresh=True))["name"] == "v3"  # type: ignore[index]


async def test_answers_the_catalog_does_not_mark_public_are_not_kept() -> None:
    client, now = CountingCatalog("no-store"), [0.0]
    b = backends(client, now)
    await b.product("p1")
    await b.product("p1")
    assert len(client.calls) == 2
