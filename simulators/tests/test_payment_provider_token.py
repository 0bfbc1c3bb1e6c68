"""The provider simulator answers only the holder of the home's token (but /health)."""

from __future__ import annotations

from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer
from simulators.payment_provider.__main__ import config_from_env
from simulators.payment_provider.app import ProviderConfig, make_app


async def test_calls_without_the_token_are_refused(tmp_path: Path) -> None:
    app = make_app(ProviderConfig(data_dir=tmp_path, api_token="t0ken"))
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/charges")).status == 401
        wrong = await client.post("/charges", json={}, headers={"Authorization": "Bearer x"})
        assert wrong.status == 401
        ok = await client.get("/charges", headers={"Authorization": "Bearer t0ken"})
        assert ok.status == 200 and (await ok.json()) == {"items": []}
        assert (await client.get("/health")).status == 200


def test_the_token_comes_from_the_environment(tmp_path: Path) -> None:
    assert config_from_env({"PAYMENTS_PROVIDER_API_TOKEN": "t"}).api_token == "t"
    assert config_from_env({}).api_token is None
