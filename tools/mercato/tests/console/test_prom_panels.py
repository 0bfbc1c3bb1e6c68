"""The console's panels from its Prometheus's range queries, as the metrics page gets
them: strict JSON, whatever the samples are."""

from __future__ import annotations

import json

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from mercato.console.prom import PANELS, Prom


@pytest.mark.asyncio
async def test_quantiles_of_no_requests_are_nulls_a_browser_can_parse() -> None:
    async def query_range(request: web.Request) -> web.Response:
        # What Prometheus answers for histogram_quantile over a quiet minute: "NaN".
        values = [[1000.0, "0.25"], [1005.0, "NaN"], [1010.0, "+Inf"]]
        return web.json_response({"status": "success", "data": {"resultType": "matrix",
                                  "result": [{"metric": {"service": "orders"},
                                              "values": values}]}})

    app = web.Application()
    app.router.add_get("/api/v1/query_range", query_range)
    async with TestServer(app) as server:
        prom = Prom(str(server.make_url("")).rstrip("/"))
        try:
            panels = await prom.panels()
        finally:
            await prom.close()
    assert [p["id"] for p in panels] == [p[0] for p in PANELS]
    points = panels[0]["series"][0]["points"]
    assert points == [[1000.0, 0.25], [1005.0, None], [1010.0, None]]
    # What the page's JSON.parse accepts: no bare NaN or Infinity tokens.
    json.dumps(panels, allow_nan=False)
