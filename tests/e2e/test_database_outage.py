"""A PostgreSQL restart under traffic, through the edge and straight at the services. While
the database is down every answer is a 2xx or a 503 with Retry-After and a problem+json
body — never a 500; a refused order writes nothing; once the database is back everything
answers again and the orders accepted around the restart complete."""

from __future__ import annotations

import signal
import uuid
from collections import Counter

import httpx2 as httpx
import psutil
import pytest
from edge_helpers import Platform, keep_until, mercato
from shop import all_terminal, bearer, customer_with_address, new_product, order_body, read

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]


def restart_postgres(platform: Platform) -> dict:
    """SIGINT (fast shutdown), as the supervisor stops it; the supervisor starts it again."""
    before = platform.state()["processes"]["postgres"]
    assert before["state"] == "ready" and before["pid"], before
    proc = psutil.Process(before["pid"])
    assert proc.name() == "postgres" and "-D" in proc.cmdline(), proc.cmdline()
    assert proc.environ().get("MERCATO_RUNTIME_HOME") == str(platform.home)
    proc.send_signal(signal.SIGINT)
    return before


def check_answer(resp: httpx.Response, seen: Counter[str], where: str) -> None:
    if resp.status_code == 503:
        assert resp.headers.get("retry-after"), (where, resp.headers)
        assert resp.headers["content-type"] == "application/problem+json", resp.text
        seen[f"{where} 503"] += 1
    else:
        assert resp.status_code in (200, 202), (where, resp.status_code, resp.text)
        seen[f"{where} {resp.status_code}"] += 1


@pytest.mark.timeout(300)
def test_a_database_restart_is_503_with_retry_after_never_500(platform: Platform) -> None:
    with platform.client() as c:
        admin = bearer(platform.admin_token(c))
        product = new_product(c, admin, on_hand=100)
        auth, address_id = customer_with_address(platform, c)
    body = order_body(product, address_id)
    processes = platform.state()["processes"]
    direct = {name: f"http://127.0.0.1:{processes[name]['port']}"
              for name in ("catalog-1", "orders-1")}
    accepted: list[str] = []
    seen: Counter[str] = Counter()

    def one_round(raw: httpx.Client) -> None:
        # Each round from a device of its own: the edge limits order creation per client.
        with platform.client() as edge:
            check_answer(edge.get("/api/catalog/products", params={"page_size": 5}), seen,
                         "edge catalog")
            check_answer(raw.get(f"{direct['catalog-1']}/api/catalog/products"), seen,
                         "catalog-1")
            for where, client in (("edge orders", edge), ("orders-1", raw)):
                base = platform.base_url if client is edge else direct["orders-1"]
                resp = client.post(f"{base}/api/orders", json=body,
                                   headers={**auth, "Idempotency-Key": str(uuid.uuid4())})
                check_answer(resp, seen, where)
                if resp.status_code == 202:
                    accepted.append(resp.json()["id"])

    before = restart_postgres(platform)
    with platform.client() as edge, httpx.Client(timeout=20) as raw:
        def restarted() -> bool:
            one_round(raw)
            now = platform.state()["processes"]["postgres"]
            return now["restarts"] > before["restarts"] and now["state"] == "ready"

        keep_until(restarted, 120, "postgres to be restarted", interval=0.1)

        def answering_again() -> bool:
            one_round(raw)
            last = [edge.get("/api/catalog/products").status_code,
                    raw.get(f"{direct['orders-1']}/health/ready").status_code]
            return last == [200, 200]

        keep_until(answering_again, 60, "the services to answer again", interval=0.2)
    # Every service, not only the two asked above, ready and held healthy by the edge, for a
    # while: the edge takes an instance out only after its next checks fail, so its view lags
    # the restart, and the tests after this one must start from a settled platform.
    platform.wait_settled()
    print(dict(seen))
    # The restart was seen: the services themselves said 503 (asked straight; through the
    # edge, they did until its health checks took them out, then the edge did).
    assert seen["catalog-1 503"] + seen["orders-1 503"] > 0, seen

    with platform.client() as c:
        # A refused order wrote nothing: the customer has exactly the accepted ones.
        mine = read(c, "/api/orders", auth, limit=100)
        assert sorted(o["id"] for o in mine) == sorted(accepted)
        orders = all_terminal(c, admin, accepted, timeout=120)
        assert {o["status"] for o in orders.values()} == {"APPROVED"}, orders
    checked = mercato(platform.home, "check", check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
