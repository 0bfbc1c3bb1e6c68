"""`mercato up --with legacy`: the names it takes, and a chaos restart keeps it."""

from __future__ import annotations

from pathlib import Path

import pytest
from mercato.chaos.faults import up_argv
from mercato.runtime.paths import Home
from mercato.runtime.services import SIMULATORS, legacy_env, parse_with


def test_with_takes_known_optional_processes_once() -> None:
    assert parse_with(None) == []
    assert parse_with(["legacy", " legacy"]) == ["legacy"]
    with pytest.raises(ValueError, match="unknown"):
        parse_with(["mainframe"])


def test_legacy_env_and_its_payment_provider() -> None:
    env = legacy_env(port=8123, database_url="postgresql+asyncpg://legacy@x/legacy")
    assert env["LEGACY_PORT"] == "8123" and env["LEGACY_HOST"] == "127.0.0.1"
    assert env["LEGACY_DATABASE_URL"].endswith("/legacy")
    # The provider simulator starts for the legacy shop even without the payments service.
    provider = next(s for s in SIMULATORS if s.name == "payments-provider")
    assert "legacy" in provider.used_by


def test_a_platform_restarted_by_chaos_keeps_its_optional_processes(tmp_path: Path) -> None:
    argv = up_argv(Home(tmp_path), {"options": {"with": ["legacy"]}})
    assert argv[-2:] == ["--with", "legacy"]


def test_an_unknown_optional_process_is_a_user_error(home: Home, mercato) -> None:  # type: ignore[no-untyped-def]
    res = mercato("up", "--detach", "--with", "mainframe")
    assert res.returncode == 2
    assert "--with mainframe: unknown; choose from legacy" in res.stderr
    assert "Traceback" not in res.stderr


def test_bench_orders_refuses_an_unknown_target(home: Home, mercato) -> None:  # type: ignore[no-untyped-def]
    res = mercato("bench", "orders", "--target", "mainframe")
    assert res.returncode == 2 and "--target mainframe" in res.stderr
