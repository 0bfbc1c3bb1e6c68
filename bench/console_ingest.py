"""The console's span ingest (``Store.add_spans``) on order traces shaped like the
platform's, the traces summary recomputed from every stored span of the trace on each batch
(before issue 17's change) beside the incremental summary (now): CPU per trace, medians of
alternating rounds, each round on a fresh store file, and their ratio.

    .venv/bin/python bench/console_ingest.py [--traces 2000] [--rounds 5]

Each trace is an order's: 33 spans from Envoy and 9 services (a request through the edge,
then the saga's messages). Every service exports the way the SDK's BatchSpanProcessor
does, a batch of the spans that ended in the last 5 s, so a batch holds spans of ~60
traces and a trace arrives in ~10 batches, children often before their parents. Both ways
must leave the same ``traces`` rows; the script checks that before printing.

``--only after`` skips the copy of the old code below: run it with PYTHONPATH set to an
older checkout's ``tools/mercato/src`` to measure that build's own ``Store``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from mercato.console.store import Span, Store

EXPORT_INTERVAL_S = 5.0
MS = 1_000_000

# (service, name, kind, parent index or None, start offset ms, duration ms): one order.
SHAPE: list[tuple[str, str, int, int | None, float, float]] = [
    ("envoy", "ingress", 2, None, 0.0, 40.0),
    ("orders", "POST /api/orders", 2, 0, 0.4, 38.0),
    ("orders", "GET", 3, 1, 2.0, 6.0),
    ("catalog", "GET /api/catalog/products/{sku}", 2, 2, 2.5, 4.5),
    ("orders", "orders.order_placed publish", 4, 1, 30.0, 2.0),
    ("inventory", "orders.order_placed process", 5, 4, 34.0, 12.0),
    ("inventory", "inventory.stock_reserved publish", 4, 5, 43.0, 1.5),
    ("orders", "inventory.stock_reserved process", 5, 6, 47.0, 9.0),
    ("orders", "payments.authorize publish", 4, 7, 53.0, 1.5),
    ("payments", "payments.authorize process", 5, 8, 57.0, 30.0),
    ("payments", "POST", 3, 9, 60.0, 20.0),
    ("payments", "payments.authorized publish", 4, 9, 83.0, 1.5),
    ("orders", "payments.authorized process", 5, 11, 87.0, 9.0),
    ("orders", "shipping.create publish", 4, 12, 93.0, 1.5),
    ("shipping", "shipping.create process", 5, 13, 97.0, 25.0),
    ("shipping", "POST", 3, 14, 99.0, 15.0),
    ("shipping", "shipping.created publish", 4, 14, 118.0, 1.5),
    ("orders", "shipping.created process", 5, 16, 122.0, 9.0),
    ("orders", "orders.order_approved publish", 4, 17, 128.0, 1.5),
    ("notifications", "orders.order_approved process", 5, 18, 132.0, 20.0),
    ("notifications", "smtp send", 3, 19, 135.0, 12.0),
    ("order_history", "orders.order_placed process", 5, 4, 35.0, 5.0),
    ("order_history", "inventory.stock_reserved process", 5, 6, 45.0, 5.0),
    ("order_history", "payments.authorized process", 5, 11, 86.0, 5.0),
    ("order_history", "shipping.created process", 5, 16, 121.0, 5.0),
    ("order_history", "orders.order_approved process", 5, 18, 131.0, 5.0),
    ("inventory", "orders.order_approved process", 5, 18, 133.0, 8.0),
    ("inventory", "inventory.committed publish", 4, 26, 139.0, 1.5),
    ("order_history", "inventory.committed process", 5, 27, 143.0, 5.0),
    ("cart", "orders.order_placed process", 5, 4, 36.0, 6.0),
    ("storefront", "orders.order_approved process", 5, 18, 134.0, 4.0),
    ("catalog", "inventory.committed process", 5, 27, 143.0, 4.0),
    ("orders", "inventory.committed process", 5, 27, 144.0, 6.0),
]


def _attributes(rnd: random.Random, kind: int, name: str, order_id: str) -> dict[str, Any]:
    if kind in (2, 3):  # server, client
        return {"http.request.method": name.split()[0] if " " in name else name,
                "http.route": name.split()[-1], "url.scheme": "http",
                "server.address": "127.0.0.1", "server.port": rnd.randint(20000, 30000),
                "http.response.status_code": 201, "network.protocol.version": "1.1",
                "user_agent.original": "mercato-loadgen/1", "mercato.order_id": order_id}
    return {"messaging.system": "nats", "messaging.operation": name.split()[-1],
            "messaging.destination.name": name.split()[0],
            "messaging.message.id": f"{rnd.getrandbits(128):032x}",
            "messaging.correlation_id": order_id, "mercato.order_id": order_id,
            "messaging.nats.stream": "EVENTS"}


def order_batches(traces: int, rate: float, seed: int = 17) -> list[list[Span]]:
    """Every service's export batches of ``traces`` orders placed at ``rate``/s, in the
    order they would reach the console."""
    rnd = random.Random(seed)  # noqa: S311 - made-up traces, the same each run
    t0 = 1_700_000_000 * 10**9
    ended: list[tuple[int, str, Span]] = []
    for i in range(traces):
        trace_id = f"{rnd.getrandbits(128):032x}"
        order_id = f"{rnd.getrandbits(128):032x}"
        begin = t0 + int(i / rate * 1e9)
        declined = rnd.random() < 0.05
        ids = [f"{rnd.getrandbits(64):016x}" for _ in SHAPE]
        for j, (service, name, kind, parent, start_ms, dur_ms) in enumerate(SHAPE):
            jitter = rnd.uniform(0.9, 1.3)
            start = begin + int(start_ms * jitter * MS)
            end = start + int(dur_ms * jitter * MS)
            error = declined and service == "payments" and kind == 5
            ended.append((end, service, Span(
                trace_id=trace_id, span_id=ids[j],
                parent_id=ids[parent] if parent is not None else None, service=service,
                instance=f"{service}-1", name=name, kind=kind, start_ns=start, end_ns=end,
                status=2 if error else 0, status_message="card_declined" if error else None,
                attributes=_attributes(rnd, kind, name, order_id),
                events=[{"name": "saga.compensating", "time_ns": end,
                         "attributes": {"saga.reason": "card_declined"}}] if error else [],
                links=[])))
    # Each exporter flushes every EXPORT_INTERVAL_S at its own phase: a batch is what
    # ended since its last flush.
    phase = {s: rnd.uniform(0, EXPORT_INTERVAL_S) for s in sorted({row[0] for row in SHAPE})}
    batches: dict[tuple[int, str], list[Span]] = {}
    for end, service, span in ended:
        k = int(((end - t0) / 1e9 - phase[service]) // EXPORT_INTERVAL_S) + 1
        batches.setdefault((k, service), []).append(span)
    ordered = sorted(batches, key=lambda key: (key[0] * EXPORT_INTERVAL_S + phase[key[1]]))
    return [batches[key] for key in ordered]


class Before(Store):
    """``add_spans`` as it was before issue 17's change (the upsert names its columns, as
    the table has more of them now)."""

    def add_spans(self, spans: Any, now: float | None = None) -> None:
        if not spans:
            return
        now = time.time() if now is None else now
        rows = [(s.trace_id, s.span_id, s.parent_id, s.service, s.instance, s.name, s.kind,
                 s.start_ns, s.end_ns, s.status, s.status_message,
                 json.dumps(s.attributes, default=str), json.dumps(s.events, default=str),
                 json.dumps(s.links, default=str), s.order_id) for s in spans]
        with self.lock, self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO spans VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
            for trace_id in {s.trace_id for s in spans}:
                self._summarise_all(trace_id, now)

    def _summarise_all(self, trace_id: str, now: float) -> None:
        row = self.db.execute(
            "SELECT min(start_ns), max(end_ns), count(*), sum(status = 2), "
            "group_concat(DISTINCT service), max(order_id) FROM spans WHERE trace_id = ?",
            (trace_id,)).fetchone()
        root = self.db.execute(
            "SELECT service, name FROM spans WHERE trace_id = ? AND (parent_id IS NULL OR "
            "parent_id NOT IN (SELECT span_id FROM spans WHERE trace_id = ?)) "
            "ORDER BY start_ns LIMIT 1", (trace_id, trace_id)).fetchone()
        services = ",".join(sorted(set((row[4] or "").split(","))))
        self.db.execute(
            "INSERT INTO traces (trace_id, first_seen, start_ns, end_ns, root_service, "
            "root_name, spans, errors, services, order_id) VALUES (?,?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT (trace_id) DO UPDATE "
            "SET start_ns = excluded.start_ns, end_ns = excluded.end_ns, "
            "root_service = excluded.root_service, root_name = excluded.root_name, "
            "spans = excluded.spans, errors = excluded.errors, services = excluded.services, "
            "order_id = excluded.order_id",
            (trace_id, now, row[0], row[1], root[0] if root else None,
             root[1] if root else None, row[2], row[3] or 0, services, row[5]))


SUMMARY = ("SELECT trace_id, start_ns, end_ns, root_service, root_name, spans, errors, "
           "services, order_id FROM traces ORDER BY trace_id")


def one_run(kind: type[Store], batches: list[list[Span]], traces: int) -> tuple[float, list]:
    with tempfile.TemporaryDirectory(prefix="mercato-bench-ingest-") as tmp:
        store = kind(Path(tmp) / "telemetry" / "telemetry.db")
        try:
            cpu0 = time.process_time()
            for i, batch in enumerate(batches):
                store.add_spans(batch, now=1000.0 + i)
            cpu = time.process_time() - cpu0
            rows = [tuple(r) for r in store.db.execute(SUMMARY)]
        finally:
            store.close()
    return cpu / traces * 1e6, rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--traces", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--rate", type=float, default=12.0, help="orders/s the traces came at")
    ap.add_argument("--only", choices=("before", "after"))
    args = ap.parse_args()
    batches = order_batches(args.traces, args.rate)
    spans = sum(len(b) for b in batches)
    print(f"{args.traces} traces, {spans} spans in {len(batches)} batches "
          f"(median {statistics.median(len(b) for b in batches):.0f} spans; "
          f"{sum(len({s.trace_id for s in b}) for b in batches) / args.traces:.1f} "
          f"batches per trace)")
    kinds: dict[str, type[Store]] = {"before": Before, "after": Store}
    if args.only:
        kinds = {args.only: kinds[args.only]}
    cpu: dict[str, list[float]] = {k: [] for k in kinds}
    results: dict[str, list] = {}
    for r in range(args.rounds):
        for name in (list(kinds) if r % 2 == 0 else list(reversed(kinds))):
            us, rows = one_run(kinds[name], batches, args.traces)
            cpu[name].append(us)
            results[name] = rows
            print(f"  round {r + 1} {name:6}: {us:7.0f} us CPU per trace")
    if len(results) == 2 and results["before"] != results["after"]:
        raise SystemExit("the two ways left different traces rows")
    med = {k: statistics.median(v) for k, v in cpu.items()}
    print("  ".join(f"{k} {v:.0f} us/trace ({v / len(SHAPE):.1f} us/span)"
                    for k, v in med.items()))
    if len(med) == 2:
        print(f"after / before = {med['after'] / med['before']:.3f}")


if __name__ == "__main__":
    main()
