"""Telemetry on by default: what the services and Envoy are told, and the supervisor's
command channel the console's restart button uses."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml
from mercato.gateway import GatewayConfig, prepare, render
from mercato.runtime import commands
from mercato.runtime.paths import Home
from mercato.runtime.telemetry import Telemetry, console_token, ingest_token, parse_sampling


@pytest.mark.parametrize(("raw", "ratio"), [("1", 1.0), ("0.25", 0.25), ("10%", 0.1),
                                            ("0", 0.0)])
def test_sampling_is_a_ratio_or_a_percentage(raw: str, ratio: float) -> None:
    assert parse_sampling(raw) == pytest.approx(ratio)


@pytest.mark.parametrize("raw", ["2", "-0.1", "lots", "150%", ""])
def test_sampling_outside_zero_to_one_is_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="--trace-sampling"):
        parse_sampling(raw)


def test_services_export_to_the_console_with_the_ingest_token(tmp_path: Path) -> None:
    home = Home(tmp_path)
    home.ensure()
    env = Telemetry(sampling=0.5).service_env(home, home.ports(), "orders")
    assert env["ORDERS_OTLP_ENDPOINT"] == f"http://127.0.0.1:{home.ports().console}"
    assert env["ORDERS_TRACE_SQL"] == "false"
    assert env["ORDERS_TRACE_PUBLISH"] == "false"  # one span a hop (ADR 0048)
    publishing = Telemetry(trace_publish=True).service_env(home, home.ports(), "orders")
    assert publishing["ORDERS_TRACE_PUBLISH"] == "true"
    assert env["OTEL_EXPORTER_OTLP_TRACES_HEADERS"] == (
        f"authorization=Bearer%20{ingest_token(home)}")
    assert (env["OTEL_TRACES_SAMPLER"], env["OTEL_TRACES_SAMPLER_ARG"]) == (
        "parentbased_traceidratio", "0.5")
    # Two secrets, kept in the home: the same on the next `up`, private to its owner.
    assert ingest_token(home) != console_token(home)
    assert console_token(home) == console_token(Home(tmp_path))
    assert (home.secrets_dir / "console-token.json").stat().st_mode & 0o777 == 0o600


def test_the_edge_traces_into_the_console_only_when_asked(tmp_path: Path) -> None:
    telemetry = render.EdgeTelemetry(port=4999, token="tok", sampling_percent=10.0)
    on = GatewayConfig(envoy_dir=tmp_path / "on", logs_dir=tmp_path / "logs",
                       telemetry=telemetry)
    off = GatewayConfig(envoy_dir=tmp_path / "off", logs_dir=tmp_path / "logs")
    prepare(on)
    prepare(off)

    def hcm(cfg: GatewayConfig) -> dict:
        lds = yaml.safe_load((cfg.envoy_dir / "lds.yaml").read_text())
        return lds["resources"][0]["filter_chains"][0]["filters"][0]["typed_config"]

    tracing = hcm(on)["tracing"]
    assert tracing["random_sampling"] == {"value": 10.0}
    otel = tracing["provider"]["typed_config"]
    assert otel["service_name"] == "envoy"
    http = otel["http_service"]
    assert http["http_uri"]["uri"] == "http://127.0.0.1:4999/v1/traces"
    assert http["request_headers_to_add"][0]["header"] == {"key": "authorization",
                                                           "value": "Bearer tok"}
    boot = yaml.safe_load(on.bootstrap_file.read_text())
    [cluster] = boot["static_resources"]["clusters"]
    assert cluster["name"] == http["http_uri"]["cluster"]
    assert "tracing" not in hcm(off)
    assert "static_resources" not in yaml.safe_load(off.bootstrap_file.read_text())
    fmt = hcm(on)["access_log"][0]["typed_config"]["log_format"]["json_format"]
    assert fmt["trace_id"] == "%TRACE_ID%"


async def test_the_command_channel_answers_one_line(tmp_path: Path) -> None:
    asked: list[tuple[str, str]] = []

    async def handle(command: str, process: str) -> dict:
        asked.append((command, process))
        return {"ok": True}

    path = tmp_path / "s.sock"
    server = await commands.serve(path, handle)
    try:
        assert path.stat().st_mode & 0o777 == 0o600
        assert await commands.send(path, "restart", "cart-1") == {"ok": True}
        refused = await commands.send(path, "format-disk", "cart-1")
        assert refused["ok"] is False and "unknown command" in refused["error"]
        reader, writer = await asyncio.open_unix_connection(str(path))
        writer.write(b"not json\n")
        assert b"expected one JSON line" in await reader.readline()
        writer.close()
    finally:
        server.close()
    assert asked == [("restart", "cart-1")]


def test_up_refuses_a_bad_sampling_before_starting_anything(tmp_path: Path) -> None:
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "mercato.cli", "up", "--detach",
                          "--trace-sampling", "150%", "--home", str(tmp_path / "h")],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert "--trace-sampling must be between 0 and 1" in res.stdout + res.stderr
    assert not (tmp_path / "h" / "run" / "supervisor.pid").exists()


def test_the_console_runs_on_uvloop(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import uvloop
    from mercato.console import __main__ as console_main

    loops: list[asyncio.AbstractEventLoop] = []

    async def serve(home: Home, port: int) -> None:
        loops.append(asyncio.get_running_loop())

    monkeypatch.setattr(console_main, "serve", serve)
    monkeypatch.setattr(console_main, "configure_logging", lambda *_: None)
    assert console_main.main(["--home", str(tmp_path / "h")]) == 0
    assert len(loops) == 1 and isinstance(loops[0], uvloop.Loop)  # as the services (ADR 0050)
