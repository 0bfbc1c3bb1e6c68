"""Pure functions of the runtime: ports in config.json, --scale, env, log parsing and merging."""

from __future__ import annotations

import json
import os
import stat
from datetime import datetime
from pathlib import Path

import pytest
from mercato import logview
from mercato.runtime.paths import Home, proposed_port, write_atomic
from mercato.runtime.proc import go_engine_env
from mercato.runtime.services import (
    instance_ids,
    parse_scale,
    register_storefront_client_argv,
    service_env,
    service_secrets,
)


def test_ports_chosen_once_and_edge_override_remembered(tmp_path):
    h = Home(tmp_path / "h")
    first = h.ports()
    assert first.edge == 8080
    assert len({first.postgres, first.nats, first.envoy_admin}) == 3
    # Homes propose different ports (checked on fixed paths: deterministic).
    assert proposed_port(Path("/srv/a/.mercato"), "postgres") != proposed_port(
        Path("/srv/b/.mercato"), "postgres")
    assert 20000 <= proposed_port(Path("/x"), "nats") < 29000
    assert h.ports() == first
    moved = h.ports(edge_port=9090)
    assert moved.edge == 9090 and moved.postgres == first.postgres
    assert Home(tmp_path / "h").ports().edge == 9090
    assert json.loads(h.config_file.read_text())["ports"]["edge"] == 9090


def test_home_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("MERCATO_HOME", str(tmp_path / "x"))
    assert Home().root == (tmp_path / "x").resolve()
    monkeypatch.delenv("MERCATO_HOME")
    monkeypatch.chdir(tmp_path)
    assert Home().root == (tmp_path / ".mercato").resolve()


def test_secret_files_are_0600_in_0700_dir(tmp_path):
    h = Home(tmp_path)
    h.write_secret("db-x", {"password": "p"})
    assert stat.S_IMODE(h.secrets_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((h.secrets_dir / "db-x.json").stat().st_mode) == 0o600
    assert h.read_secret("db-x") == {"password": "p"}
    assert h.read_secret("nope") is None


def test_write_atomic_leaves_no_temp_files(tmp_path):
    target = tmp_path / "state.json"
    for i in range(3):
        write_atomic(target, str(i))
    assert target.read_text() == "2"
    assert os.listdir(tmp_path) == ["state.json"]


def test_parse_scale():
    assert parse_scale(["catalog=2"], ["identity", "catalog"]) == {"identity": 1, "catalog": 2}
    assert parse_scale(None, ["a"]) == {"a": 1}
    for bad in (["catalog"], ["catalog=0"], ["nope=2"], ["catalog=x"]):
        with pytest.raises(ValueError):
            parse_scale(bad, ["identity", "catalog"])
    assert instance_ids("catalog", 2) == ["catalog-1", "catalog-2"]


def test_service_env_prefix():
    env = service_env("catalog", instance_id="catalog-2", port=1234, database_url="db",
                      nats_url="nats://x")
    assert env == {"CATALOG_INSTANCE_ID": "catalog-2", "CATALOG_HOST": "127.0.0.1",
                   "CATALOG_PORT": "1234", "CATALOG_DATABASE_URL": "db",
                   "CATALOG_NATS_URL": "nats://x", "CATALOG_ENVIRONMENT": "development"}


def _ts(s: str) -> float:
    return datetime.fromisoformat(s).timestamp()


def test_parse_json_postgres_nats_and_continuation_lines():
    lines = [
        '{"timestamp": "2026-01-01T10:00:00.500000Z", "level": "info", "event": "a"}',
        "Traceback (most recent call last):",
    ]
    entries = list(logview.parse_lines(lines, "catalog-1"))
    assert entries[0].doc and entries[0].doc["event"] == "a"
    assert entries[1].ts == entries[0].ts  # continuation keeps its line's time
    pg = logview.parse_line("2026-01-01 10:00:01.000 UTC [42] LOG:  ready", "postgres", 0, 0)
    assert pg.ts == _ts("2026-01-01T10:00:01+00:00")
    nats = logview.parse_line("[7] 2026/01/01 10:00:02.000000 [INF] Server is ready", "nats", 0, 0)
    assert nats.ts == _ts("2026-01-01T10:00:02")


def test_merge_orders_across_files_and_filters(tmp_path):
    (tmp_path / "catalog-1.log").write_text(
        '{"timestamp": "2026-01-01T10:00:00Z", "event": "c1", "trace_id": "t1"}\n'
        '{"timestamp": "2026-01-01T10:00:02Z", "event": "c2"}\n')
    (tmp_path / "catalog-2.log").write_text(
        '{"timestamp": "2026-01-01T10:00:01Z", "event": "d1", "trace_id": "t1"}\n')
    (tmp_path / "catalogue.log").write_text("not an instance of catalog\n")
    (tmp_path / "identity-1.log").write_text("plain text line\n")
    files = logview.select_logs(tmp_path, "catalog")
    assert [f.name for f in files] == ["catalog-1.log", "catalog-2.log"]
    merged = logview.merged(files)
    assert [e.doc["event"] for e in merged] == ["c1", "d1", "c2"]
    traced = logview.merged(logview.select_logs(tmp_path), trace="t1")
    assert [e.doc["event"] for e in traced] == ["c1", "d1"]
    assert logview.known_sources(tmp_path) == ["catalog", "catalogue", "identity"]


def test_render_shows_instance_level_event_and_extras():
    entry = logview.parse_line(
        '{"timestamp": "2026-01-01T10:00:00Z", "level": "error", "event": "boom", '
        '"service": "catalog", "instance": "catalog-2", "order_id": 5}', "catalog-2", 0, 0)
    text = logview.render(entry).plain
    assert "catalog-2" in text and "ERROR" in text and "boom" in text and "order_id=5" in text
    raw = logview.render(logview.parse_line("hello", "nats", 0, 0)).plain
    assert raw.endswith("hello")


def test_envoy_access_log_lines():
    line = ('{"time": "2026-01-01T10:00:03.000Z", "method": "GET", "path": "/api/x", '
            '"status": 200, "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}')
    entry = logview.parse_line(line, "envoy-access", 0, 0)
    assert entry.ts == _ts("2026-01-01T10:00:03+00:00")
    assert logview.matches_trace(entry, "4bf92f35")
    assert "GET /api/x 200" in logview.render(entry).plain


def test_service_secrets_are_made_once_per_home_and_kept(tmp_path):
    home = Home(tmp_path / "home")
    first = service_secrets(home, "identity")
    assert set(first) == {"IDENTITY_SIGNING_KEY_SECRET"}
    assert len(first["IDENTITY_SIGNING_KEY_SECRET"]) >= 40
    # The next start (another process, same home) gets the same one: the keys it encrypted
    # must stay readable.
    assert service_secrets(Home(tmp_path / "home"), "identity") == first
    kept = home.secrets_dir / "identity-signing-key.json"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert service_secrets(home, "catalog") == {}
    orders = service_secrets(home, "orders")
    assert set(orders) == {"ORDERS_CARD_FINGERPRINT_SECRET"}
    assert service_secrets(Home(tmp_path / "home"), "orders") == orders
    assert service_secrets(Home(tmp_path / "other"), "identity") != first


def test_the_storefront_gets_its_oauth_client_secret_and_the_registration_the_same(tmp_path):
    home = Home(tmp_path / "home")
    secret = service_secrets(home, "storefront")["STOREFRONT_OAUTH_CLIENT_SECRET"]
    # identity takes client secrets of 32+ characters; this one has 256 random bits.
    assert len(secret) >= 43
    again = service_secrets(Home(tmp_path / "home"), "storefront")
    assert again["STOREFRONT_OAUTH_CLIENT_SECRET"] == secret  # kept across calls
    assert set(again) == {"STOREFRONT_OAUTH_CLIENT_SECRET", "STOREFRONT_SESSION_SECRET"}
    kept = home.secrets_dir / "storefront-oauth-client.json"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    argv = register_storefront_client_argv("python", 8080)
    assert argv[:5] == ["python", "-m", "identity", "register-client", "storefront"]
    assert secret not in " ".join(argv)  # it goes on stdin
    uris = [argv[i + 1] for i, a in enumerate(argv) if a == "--redirect-uri"]
    assert uris == ["http://localhost:8080/auth/callback", "http://127.0.0.1:8080/auth/callback"]


def test_go_engines_get_one_p_unless_the_user_chose() -> None:
    assert go_engine_env({}) == {"GOMAXPROCS": "1"}
    assert go_engine_env({"GOMAXPROCS": "4"}) == {}  # the user's own choice stands
    assert go_engine_env({"GOMAXPROCS": ""}) == {"GOMAXPROCS": "1"}
