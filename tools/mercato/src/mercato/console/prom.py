"""The console's view of its Prometheus (mercato.runtime.prometheus): alerting rules with
their state, and the metric panels' range queries."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import aiohttp

# (panel id, title, unit, PromQL): RED per service, messaging, sagas.
PANELS: list[tuple[str, str, str, str]] = [
    ("http_rate", "HTTP requests/s by service", "req/s",
     'sum by (service) (rate(http_requests_total{route=~"/api/.+"}[1m]))'),
    ("http_errors", "HTTP 5xx/s by service", "err/s",
     "sum by (service) (rate(http_request_errors_total[1m]))"),
    ("http_p99", "HTTP p99 latency by service", "s",
     'histogram_quantile(0.99, sum by (service, le) '
     '(rate(http_request_duration_seconds_bucket{route=~"/api/.+"}[1m])))'),
    ("handled", "Messages handled/s by service", "msg/s",
     "sum by (service) (rate(consumer_messages_total[1m]))"),
    ("handler_p99", "Message handler p99 by service", "s",
     "histogram_quantile(0.99, sum by (service, le) (rate(consumer_handler_seconds_bucket[1m])))"),
    ("lag", "Consumer lag by consumer", "msgs",
     "max by (consumer) (consumer_lag_messages)"),
    ("outbox", "Outbox backlog by service", "rows", "max by (service) (outbox_backlog)"),
    ("outbox_age", "Oldest unsent outbox row", "s",
     "max by (service) (outbox_oldest_unpublished_age_seconds)"),
    ("dead_letters", "Dead letters waiting", "msgs",
     "max by (consumer) (dead_letters_waiting)"),
    ("sagas", "Running sagas by step", "sagas", "max by (step) (saga_running)"),
    ("saga_outcomes", "Sagas finished/s by status", "/s",
     "sum by (status) (rate(saga_finished_total[1m]))"),
]


def _finite(value: str) -> float | None:
    """A sample as JSON can carry it: Prometheus answers "NaN" for a quantile of no requests
    (and "+Inf" past the last bucket), which Python's json writes as bare NaN / Infinity,
    tokens a browser's JSON.parse rejects, and one such point blanked the whole page."""
    number = float(value)
    return number if math.isfinite(number) else None


class Prom:
    def __init__(self, base_url: str | None, auth: aiohttp.BasicAuth | None = None) -> None:
        self.base_url = base_url
        self.auth = auth
        self.session: aiohttp.ClientSession | None = None

    async def _get(self, path: str, **params: Any) -> Any:
        if self.base_url is None:
            raise LookupError("no Prometheus runs for this home: `make observability-tools`, "
                              "then `mercato down` and `mercato up`")
        if self.session is None:
            self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
        async with self.session.get(f"{self.base_url}{path}", params=params,
                                    auth=self.auth) as resp:
            doc = await resp.json()
        if doc.get("status") != "success":
            raise LookupError(f"Prometheus: {doc.get('error')}")
        return doc["data"]

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()

    async def alerts(self) -> list[dict[str, Any]]:
        """Every alerting rule, firing first, with its active alerts."""
        data = await self._get("/api/v1/rules", type="alert")
        order = {"firing": 0, "pending": 1, "inactive": 2}
        rules = []
        for group in data["groups"]:
            for r in group["rules"]:
                rules.append({"group": group["name"], "name": r["name"], "state": r["state"],
                              "severity": r.get("labels", {}).get("severity", ""),
                              "for_s": r.get("duration", 0),
                              "summary": r.get("annotations", {}).get("summary", ""),
                              "alerts": [{"labels": a["labels"], "state": a["state"],
                                          "active_at": a.get("activeAt")}
                                         for a in r.get("alerts", [])]})
        return sorted(rules, key=lambda r: (order.get(r["state"], 3), r["name"]))

    async def panels(self, minutes: float = 15) -> list[dict[str, Any]]:
        end = time.time()

        async def one(pid: str, title: str, unit: str, query: str) -> dict[str, Any]:
            data = await self._get("/api/v1/query_range", query=query, start=end - minutes * 60,
                                   end=end, step=5)
            series = [{"name": ",".join(f"{v}" for v in s["metric"].values()) or pid,
                       "points": [[float(t), _finite(v)] for t, v in s["values"]]}
                      for s in data["result"]]
            return {"id": pid, "title": title, "unit": unit, "query": query, "series": series}

        return list(await asyncio.gather(*(one(*panel) for panel in PANELS)))
