"""A stand-in catalog for the benchmark test: FastAPI on uvicorn (uvloop, httptools) like a
chassis service, answering ``GET /api/catalog/products`` with a fixed page of products and no
database, and registering itself as ``catalog``. ``python standin_catalog.py PORT NATS_URL ID``.
"""

from __future__ import annotations

import asyncio
import sys

import nats
import uvicorn
from chassis.registry import Registration, RegistryClient
from fastapi import FastAPI

ITEMS = [{"id": f"00000000-0000-0000-0000-{i:012d}", "sku": f"SKU-{i:05d}",
          "name": f"Product {i}", "description": "A product used by the benchmark." * 2,
          "price": {"amount": f"{1000 + i}.00", "currency": "KRW"}, "category": "bench"}
         for i in range(20)]


def make_app() -> FastAPI:
    app = FastAPI()

    @app.get("/api/catalog/products")
    async def products(page: int = 1, page_size: int = 20) -> dict[str, object]:
        return {"items": ITEMS[:page_size], "total": 500, "page": page, "page_size": page_size}

    @app.get("/health/ready")
    async def ready() -> dict[str, str]:
        return {"status": "ready"}

    return app


async def main(port: int, nats_url: str, instance_id: str) -> None:
    config = uvicorn.Config(make_app(), host="127.0.0.1", port=port, log_config=None,
                            access_log=False, loop="uvloop", http="httptools")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    reg = None
    if nats_url != "-":
        nc = await nats.connect(nats_url)
        reg = Registration(RegistryClient(nc), service="catalog", instance_id=instance_id,
                           host="127.0.0.1", port=port)
        await reg.start()
    try:
        await serving
    finally:
        if reg is not None:
            await reg.stop()


if __name__ == "__main__":
    import uvloop

    uvloop.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3]))
