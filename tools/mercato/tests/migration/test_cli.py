"""`mercato migrate`: bad input is a clear error that changes nothing; guarded shifts judged
on a live ACL's counters; steps applied by the gateway's own rendering."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from acl_standins import Side, legacy_app, serve, services_app
from mercato.cli import app
from mercato.gateway import GatewayConfig
from mercato.gateway.control import coexistence, write_static
from mercato.gateway.routes import load_routes
from mercato.migration import flags
from mercato.migration.acl import Acl
from mercato.migration.routes import CAPABILITY, PRIMARY, SHADOW
from typer.testing import CliRunner

runner = CliRunner()


def mercato(home: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["migrate", *args, "--home", str(home)])
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        result.exception
    return result.exit_code, result.output


def _flags(home: Path) -> dict[str, object]:
    return flags.read_flags(flags.flag_file(home))


@pytest.mark.parametrize("args, message", [
    (["shift", "nope", "--percent", "10"], "no capability 'nope'"),
    (["shift", "catalog", "--percent", "101"], "less than or equal to 100"),
    (["shift", "catalog", "--percent", "ten"], "should be a valid integer"),
    (["shift", "catalog"], "Missing option '--percent'"),
    (["shadow", "checkout"], "checkout is not shadowed"),
    (["shadow", "cart", "--percent", "10"], "cart is not shadowed"),
    (["finish", "catalog"], "finish needs 100 %"),
    (["shift", "catalog", "--percent", "10"], "cannot judge the shift"),
])
def test_bad_input_is_a_clear_error_and_writes_nothing(tmp_path: Path, args: list[str],
                                                       message: str) -> None:
    code, output = mercato(tmp_path, *args)
    assert code in (1, 2)
    assert message in " ".join(output.split())
    assert "Traceback" not in output
    assert not flags.flag_file(tmp_path).exists()


def test_a_broken_flag_file_is_named(tmp_path: Path) -> None:
    path = flags.flag_file(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    code, output = mercato(tmp_path, "finish", "catalog")
    assert code == 1 and "flags.json" in output and "Traceback" not in output


def test_rollback_and_shadow_need_no_platform(tmp_path: Path) -> None:
    assert mercato(tmp_path, "shadow", "catalog", "--percent", "20")[0] == 0
    code, output = mercato(tmp_path, "rollback", "catalog")
    assert code == 0 and "applied at its next start" in output
    assert _flags(tmp_path)["migration.catalog.shadow"] == 20
    assert _flags(tmp_path)["migration.catalog.percent"] == 0


def test_status_shows_the_switches_and_their_flags(tmp_path: Path) -> None:
    mercato(tmp_path, "shadow", "catalog", "--percent", "15")
    code, output = mercato(tmp_path, "status", "--json")
    assert code == 0
    doc = json.loads(output)
    catalog = doc["capabilities"][0]
    assert (catalog["capability"], catalog["shadow"], catalog["routes_to"]) == (
        "catalog", 15, "legacy")
    assert catalog["sync_lag"] == "sync not running" and catalog["since_last_step"] is None
    shadow = next(f for f in doc["flags"] if f["flag"] == "migration.catalog.shadow")
    assert shadow == {"flag": "migration.catalog.shadow", "value": 15, "reason": "STATIC",
                      "error": None}


# -- against a live ACL ---------------------------------------------------------------------------

class Running:
    """What `mercato migrate` looks for of a running platform: the supervisor's lock and pid,
    state.json naming the ACL, and the gateway's rendering of the flag file."""

    def __init__(self, home: Path, acl_url: str) -> None:
        self.home = home
        (home / "run").mkdir(parents=True, exist_ok=True)
        self.lock = open(home / "run" / "supervisor.lock", "a")
        fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        (home / "run" / "supervisor.pid").write_text(str(os.getpid()))
        (home / "run" / "state.json").write_text(json.dumps({"urls": {"acl": acl_url}}))
        self.cfg = GatewayConfig(envoy_dir=home / "envoy", logs_dir=home / "logs",
                                 legacy_port=7400, acl_port=7401,
                                 flags_file=flags.flag_file(home))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._render, daemon=True)
        self.thread.start()

    def _render(self) -> None:  # the control plane's pass, without the registry
        table = load_routes()
        while not self.stop.wait(0.05):
            write_static(self.cfg, table, coexist=coexistence(self.cfg))

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.lock.close()


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[tuple[Path, Side, str]]:
    legacy, services = Side(), Side()
    async with serve(legacy_app(legacy)) as lurl, serve(services_app(services)) as surl:
        acl = Acl(legacy_url=lurl, services_url=surl)
        async with serve(acl.app()) as url:
            running = Running(tmp_path, url)
            try:
                yield tmp_path, services, url
            finally:
                running.close()


async def _shadow_reads(url: str, n: int) -> None:
    headers = {PRIMARY: "legacy", SHADOW: "1", CAPABILITY: "catalog"}
    async with aiohttp.ClientSession() as http:
        for i in range(n):
            async with http.get(f"{url}/shop/products/{7 + i % 3}", headers=headers) as resp:
                assert resp.status == 200
        await asyncio.sleep(0.2)  # the comparisons run after the answers


async def _cli(home: Path, *args: str) -> tuple[int, str]:
    return await asyncio.to_thread(mercato, home, *args)


async def test_a_failing_services_side_refuses_the_shift(live: tuple[Path, Side, str]) -> None:
    home, services, url = live
    services.fail = True
    await _shadow_reads(url, 30)
    code, output = await _cli(home, "shift", "catalog", "--percent", "10")
    text = " ".join(output.split())
    assert code == 1
    assert "shadow mismatch rate 100.0 %" in text or "error rate 100.0 %" in text
    assert "shift refused; nothing changed" in text
    assert _flags(home)["migration.catalog.percent"] == 0


async def test_a_clean_shadow_lets_the_shift_go_on_and_the_edge_applies_it(
        live: tuple[Path, Side, str]) -> None:
    home, _, url = live
    await _shadow_reads(url, 30)
    code, output = await _cli(home, "shift", "catalog", "--percent", "10")
    assert code == 0, output
    assert "applied at the edge" in output
    # 30 comparisons and 30 services answers (the shadow's): enough samples, judged.
    assert "warning" not in output
    rds = (home / "envoy" / "rds.yaml").read_text() if (home / "envoy" / "rds.yaml").exists() \
        else (home / "envoy" / "lds.yaml").read_text()
    assert "catalog /shop/products/* shifted" in rds
    code, output = await _cli(home, "status", "--json")
    catalog = json.loads(output)["capabilities"][0]
    # The step started a new window: nothing judged since.
    assert catalog["since_last_step"]["comparisons"] == 0
    assert catalog["since_acl_start"]["comparisons"] == 30
    assert (await _cli(home, "rollback", "catalog"))[0] == 0
    assert _flags(home)["migration.catalog.percent"] == 0


def test_mismatches_without_an_acl_is_a_clear_error(tmp_path: Path) -> None:
    code, output = mercato(tmp_path, "mismatches", "catalog")
    assert code == 1 and "the ACL is not running" in output


@pytest.fixture(autouse=True)
def _wide_terminal() -> Iterator[None]:
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "200"
    yield
    if old is None:
        os.environ.pop("COLUMNS", None)
    else:
        os.environ["COLUMNS"] = old
