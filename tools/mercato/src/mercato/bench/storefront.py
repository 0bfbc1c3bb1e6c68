"""``mercato bench storefront``: the web shop's pages through the edge at a constant rate.

Measures a running platform (``mercato up --detach``). Set-up, as a shop is used: a
throw-away admin stocks the catalog's first products; a few customers sign up through the
storefront's own form (each from its own loopback address and with its own cookie jar, as
browsers are). Then page requests are sent at fixed instants (request i at ``start + i /
rate``: an open model, so a slow storefront shows as latency, never as less load), each by
the next customer, the page type drawn from a fixed cycle that gives the mix below:

    product 50 %, search 20 %, home 10 %, cart 10 %, add to cart 5 %, checkout 5 %
    (the checkout form, then paying with 4242424242424242: the second request is "pay")

Per page type: count, p50 and p99 of send -> full answer, and non-2xx/3xx answers. The
storefront's CPU (psutil, every instance) is shown as its share of the whole platform's CPU
during the run and in cores. Target: product page p99 under 150 ms at 50 pages/s.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import unescape
from pathlib import Path
from typing import Any

from mercato.bench.load import send_offsets
from mercato.bench.measure import MACHINE, percentile, sample_cpu
from mercato.bench.shop import BenchError, bearer, create_admin, fetch_json, login, read_platform

TARGET_PAGE = "product"
TARGET_P99_MS = 150.0
TARGET_RATE = 50.0
# 20 slots: the mix in the module docstring.
CYCLE = (["product"] * 10 + ["search"] * 4 + ["home"] * 2 + ["cart"] * 2 + ["add"]
         + ["checkout"])
CSRF = re.compile(rb'name="csrf" value="([^"]+)"')
HIDDEN = re.compile(r'<input type="hidden" name="(?P<name>[^"]+)" value="(?P<value>[^"]*)">')
KEY = re.compile(rb'name="checkout_key" value="([0-9a-f]{32})"')
SAVED_ADDRESS = re.compile(rb'name="address_id" value="([0-9a-f-]{36})"')
PASSWORD = "bench password 1"  # noqa: S105 - throw-away accounts of the bench
WORDS = ["kettle", "tea", "camera", "book", "shirt", "charger", "coffee", "tent"]


@dataclass
class Shopper:
    session: Any
    csrf: str = ""


@dataclass
class Timings:
    by_page: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    # What the failed answers were (a status, or the exception's name): the report says.
    failures: dict[str, int] = field(default_factory=dict)

    def add(self, page: str, ms: float, failure: str | None) -> None:
        self.by_page.setdefault(page, []).append(ms)
        if failure is not None:
            self.errors[page] = self.errors.get(page, 0) + 1
            self.failures[failure] = self.failures.get(failure, 0) + 1


async def _sign_up(edge: str, session: Any) -> Shopper:
    """A new customer as a browser makes one: the storefront's sign-up form, then identity's
    sign-in page (the OAuth code flow the storefront starts), then the callback."""
    async with session.get(f"{edge}/signup") as r:
        body = await r.read()
    found = CSRF.search(body)
    if not found:
        raise BenchError("the storefront's sign-up page has no form: is the storefront up?")
    csrf = found.group(1).decode()
    email = f"bench-{uuid.uuid4().hex[:10]}@example.com"
    for _ in range(30):
        async with session.post(f"{edge}/signup", allow_redirects=False,
                                data={"csrf": csrf, "name": "Bench", "email": email,
                                      "password": PASSWORD}) as r:
            if r.status == 429:  # the edge limits sign-ups per client address
                await asyncio.sleep(1)
                continue
            if r.status not in (302, 303):
                raise BenchError(f"signing up through the storefront answered {r.status}")
            authorize = r.headers["Location"]
            break
    else:
        raise BenchError("the edge kept refusing sign-ups (429) for 30 s")
    async with session.get(f"{edge}{authorize}" if authorize.startswith("/") else authorize
                           ) as r:
        page = await r.text()
        if r.status != 200:
            raise BenchError(f"identity's sign-in page answered {r.status}")
    fields = {m["name"]: unescape(m["value"]) for m in HIDDEN.finditer(page)}
    async with session.post(f"{edge}/api/identity/authorize", allow_redirects=False,
                            data={**fields, "username": email, "password": PASSWORD}) as r:
        if r.status != 303:
            raise BenchError(f"signing in at identity answered {r.status}")
        callback = r.headers["Location"]
    async with session.get(callback, allow_redirects=False) as r:
        if r.status != 303:
            raise BenchError(f"the storefront's sign-in callback answered {r.status}")
    # Signing in issued a new cookie: its forms carry a new token.
    async with session.get(f"{edge}/") as r:
        body = await r.read()
    found = CSRF.search(body)
    if not found:
        raise BenchError("the storefront's home page has no form after signing in")
    return Shopper(session=session, csrf=found.group(1).decode())


async def prepare(edge: str, home: Path, like: Any, customers: int,
                  products: int) -> tuple[list[Shopper], list[dict[str, Any]]]:
    email = f"bench-admin-{uuid.uuid4().hex[:8]}@example.com"
    await asyncio.to_thread(create_admin, home, email, PASSWORD)
    admin = bearer(await login(like, edge, email, PASSWORD))
    page = await fetch_json(like, "GET", f"{edge}/api/catalog/products",
                       params={"page_size": str(products)})
    stocked = page["items"][:products]
    if not stocked:
        raise BenchError("the catalog has no products")
    for p in stocked:
        await fetch_json(like, "PUT", f"{edge}/api/inventory/stock/{p['sku']}", headers=admin,
                    json={"on_hand": 1_000_000})
    shoppers = []
    for i in range(customers):
        session = browser_session(i, like)
        try:
            shoppers.append(await _sign_up(edge, session))
        except BaseException:
            await session.close()
            raise
    return shoppers, stocked


def browser_session(i: int, like: Any) -> Any:
    """Customer ``i``'s browser: its own loopback address (the edge limits per client) and
    a cookie jar that keeps the storefront's cookie (aiohttp's default jar refuses cookies
    from an IP address such as 127.0.0.1)."""
    import aiohttp

    address = f"127.3.{i // 250 % 250}.{i % 250 + 2}"
    return aiohttp.ClientSession(
        timeout=like.timeout, headers={"User-Agent": "mercato-bench"},
        cookie_jar=aiohttp.CookieJar(unsafe=True),
        connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=None, local_addr=(address, 0)))


async def _timed(timings: Timings, page: str, session: Any, method: str, url: str,
                 **kw: Any) -> bytes:
    t0 = time.perf_counter()
    failure: str | None = None
    try:
        async with session.request(method, url, allow_redirects=False, **kw) as r:
            body = await r.read()
            if r.status >= 400:
                failure = str(r.status)
    except Exception as exc:  # a failed request is a figure, not a crash
        body, failure = b"", type(exc).__name__
    timings.add(page, (time.perf_counter() - t0) * 1000, failure)
    return bytes(body)


async def one(edge: str, kind: str, i: int, shopper: Shopper, products: list[dict[str, Any]],
              timings: Timings) -> None:
    s = shopper.session
    product = products[i % len(products)]
    if kind == "product":
        await _timed(timings, kind, s, "GET", f"{edge}/products/{product['id']}")
    elif kind == "search":
        await _timed(timings, kind, s, "GET", f"{edge}/search",
                     params={"q": WORDS[i % len(WORDS)]})
    elif kind == "home":
        await _timed(timings, kind, s, "GET", f"{edge}/")
    elif kind == "cart":
        await _timed(timings, kind, s, "GET", f"{edge}/cart")
    elif kind == "add":
        await _timed(timings, "add to cart", s, "POST", f"{edge}/cart/items",
                     data={"csrf": shopper.csrf, "product_id": product["id"],
                           "quantity": "1"})
    elif kind == "checkout":
        form = await _timed(timings, "checkout", s, "GET", f"{edge}/checkout")
        key = KEY.search(form)
        if key is None:  # an empty cart redirects to it: nothing to pay for yet
            return
        saved = SAVED_ADDRESS.search(form)
        address = ({"address_id": saved.group(1).decode()} if saved else
                   {"address_id": "new", "name": "Bench", "line1": "1 Main", "city": "Seoul",
                    "postal_code": "04524", "country": "KR"})
        await _timed(timings, "pay", s, "POST", f"{edge}/checkout",
                     data={"csrf": shopper.csrf, "checkout_key": key.group(1).decode(),
                           "card_number": "4242424242424242", **address})


async def load(edge: str, shoppers: list[Shopper], products: list[dict[str, Any]], *,
               rate: float, duration_s: float, timings: Timings) -> float:
    start = time.monotonic()
    tasks = []
    for i, offset in enumerate(send_offsets(rate, duration_s)):
        delay = start + offset - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        kind = CYCLE[i % len(CYCLE)]
        # The checkout is paid by whoever added to the cart just before it (the slot before
        # in the cycle).
        who = (i - 1) if kind == "checkout" else i
        tasks.append(asyncio.create_task(one(edge, kind, i, shoppers[who % len(shoppers)],
                                             products, timings)))
    await asyncio.gather(*tasks)
    return time.monotonic() - start


async def _run(home: Path, *, rate: float, duration_s: float, warmup_s: float,
               customers: int, products: int, say: Any) -> dict[str, Any]:
    import aiohttp

    platform = read_platform(home)
    if "storefront" not in platform.groups:
        raise BenchError("the storefront is not running: mercato up --detach")
    edge = platform.edge_url
    like = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30),
                                 connector=aiohttp.TCPConnector(limit=0))
    try:
        say(f"setting up: {products} stocked products, {customers} customers signing up")
        shoppers, stocked = await prepare(edge, home, like, customers, products)
        if warmup_s:
            say(f"warm-up: {warmup_s:.0f} s at {rate:g} pages/s")
            await load(edge, shoppers, stocked, rate=rate, duration_s=warmup_s,
                       timings=Timings())
        say(f"measuring: {duration_s:.0f} s at {rate:g} pages/s")
        timings = Timings()
        before = sample_cpu(platform.groups)
        took = await load(edge, shoppers, stocked, rate=rate, duration_s=duration_s,
                          timings=timings)
        after = sample_cpu(platform.groups)
    finally:
        await like.close()
        for s in locals().get("shoppers", []):
            await s.session.close()
    cpu = {who: after[who] - before.get(who, 0.0) for who in after}
    platform_cpu = sum(v for who, v in cpu.items() if who not in (MACHINE, "bench client"))
    pages = {page: {"count": len(ms), "p50_ms": percentile(ms, 0.5),
                    "p99_ms": percentile(ms, 0.99), "errors": timings.errors.get(page, 0)}
             for page, ms in sorted(timings.by_page.items())}
    return {"pages": pages, "took_s": took, "failures": timings.failures,
            "storefront_cpu_s": cpu.get("storefront", 0.0), "platform_cpu_s": platform_cpu,
            "machine_cpu_s": cpu.get(MACHINE, 0.0)}


def print_report(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    out = Console(highlight=False)
    table = Table(title=f"storefront pages through the edge at {report['config']['rate']:g}"
                        f"/s for {report['config']['duration_s']:g} s")
    for col in ("page", "count", "p50 ms", "p99 ms", "errors"):
        table.add_column(col, justify="left" if col == "page" else "right")
    for page, row in report["pages"].items():
        table.add_row(page, str(row["count"]), f"{row['p50_ms']:.1f}", f"{row['p99_ms']:.1f}",
                      str(row["errors"]))
    out.print(table)
    if report.get("failures"):
        out.print("failed answers: " + ", ".join(f"{k} x {v}" for k, v in
                                                  sorted(report["failures"].items())))
    took = report["took_s"] or 1.0
    share = report["storefront_cpu_s"] / report["platform_cpu_s"] if report["platform_cpu_s"] \
        else 0.0
    out.print(f"storefront (BFF) CPU: {report['storefront_cpu_s']:.1f} s = "
              f"{report['storefront_cpu_s'] / took:.2f} cores, {share:.0%} of the platform's "
              f"{report['platform_cpu_s']:.1f} s (machine busy {report['machine_cpu_s']:.1f} s "
              f"over {took:.1f} s)")
    product = report["pages"].get(TARGET_PAGE, {})
    ok = report["meets_target"]
    out.print(f"target: {TARGET_PAGE} page p99 < {TARGET_P99_MS:.0f} ms at "
              f"{TARGET_RATE:g} pages/s: "
              + ("[green]met[/]" if ok else "[red]missed[/]")
              + (f" (p99 {product['p99_ms']:.1f} ms)" if product else ""))


def run_storefront_bench(home: Path, *, rate: float = 50.0, duration_s: float = 30.0,
                         warmup_s: float = 5.0, customers: int = 10, products: int = 8,
                         report_file: Path | None = None) -> int:
    """0: target met; 1: page errors; 2: could not run; 3: ran clean, missed the target."""
    from rich.console import Console

    from mercato.bench.report import default_reports_dir

    console = Console(stderr=True, highlight=False)

    def say(line: str) -> None:
        console.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {line}")

    try:
        result = asyncio.run(_run(Path(home), rate=rate, duration_s=duration_s,
                                  warmup_s=warmup_s, customers=customers, products=products,
                                  say=say))
    except BenchError as exc:
        console.print(f"[red]bench storefront:[/red] {exc}")
        return 2
    product = result["pages"].get(TARGET_PAGE, {})
    meets = (rate >= TARGET_RATE and product.get("p99_ms") is not None
             and product["p99_ms"] < TARGET_P99_MS)
    report = {"benchmark": "storefront", "at": datetime.now(UTC).isoformat(),
              "config": {"rate": rate, "duration_s": duration_s, "warmup_s": warmup_s,
                         "customers": customers, "products": products},
              "targets": {"page": TARGET_PAGE, "p99_ms": TARGET_P99_MS, "rate": TARGET_RATE},
              "meets_target": meets, **result}
    out = report_file or default_reports_dir() / "storefront.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print_report(report)
    console.print(f"[dim]report: {out}[/]")
    if any(row["errors"] for row in result["pages"].values()):
        return 1
    return 0 if meets else 3
