"""`python -m simulators.payment_provider`: serve the simulated provider until SIGTERM/SIGINT.

Environment (all optional):
  PAYMENTS_PROVIDER_HOST (127.0.0.1), PAYMENTS_PROVIDER_PORT (8790),
  PAYMENTS_PROVIDER_DATA_DIR (./.mercato/payments-provider; the SQLite file lives there),
  PAYMENTS_PROVIDER_LATENCY_MS (0), PAYMENTS_PROVIDER_FAILURE_RATE (0.0, share of 503s),
  PAYMENTS_PROVIDER_TIMEOUT_CARD_DELAY_MS (30000, how late card 4000000000000119 is answered),
  PAYMENTS_PROVIDER_API_TOKEN (none: anyone on the machine may call; `mercato up` sets one).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

import uvloop
from aiohttp import web

from simulators.payment_provider.app import ProviderConfig, make_app


def config_from_env(env: Mapping[str, str]) -> ProviderConfig:
    def get(name: str, default: str) -> str:
        return env.get(f"PAYMENTS_PROVIDER_{name}", default)

    config = ProviderConfig(
        data_dir=Path(get("DATA_DIR", ".mercato/payments-provider")),
        host=get("HOST", "127.0.0.1"), port=int(get("PORT", "8790")),
        latency_ms=int(get("LATENCY_MS", "0")), failure_rate=float(get("FAILURE_RATE", "0")),
        timeout_card_delay_ms=int(get("TIMEOUT_CARD_DELAY_MS", "30000")),
        api_token=get("API_TOKEN", "") or None)
    if not 0 <= config.failure_rate <= 1 or config.latency_ms < 0 or not 0 < config.port < 65536:
        raise ValueError("PAYMENTS_PROVIDER_FAILURE_RATE must be 0..1, LATENCY_MS >= 0, "
                         "PORT 1..65535")
    return config


def main() -> None:
    try:
        config = config_from_env(os.environ)
    except ValueError as exc:
        print(f"simulators.payment_provider: bad configuration: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    print(f"simulators.payment_provider: listening on http://{config.host}:{config.port} "
          f"(data {config.data_dir})", flush=True)
    # uvloop, as the services have (ADR 0050).
    web.run_app(make_app(config), host=config.host, port=config.port, print=None,
                handle_signals=True, access_log=None, loop=uvloop.new_event_loop())


if __name__ == "__main__":
    main()
