"""`python -m payments` as the runtime starts it: migrates, serves, stops on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
from payments_kit import ProviderProcess, free_port

pytestmark = pytest.mark.integration


def test_the_service_process_migrates_serves_and_stops(fresh_database: str,
                                                       provider: ProviderProcess) -> None:
    port = free_port()
    env = {**os.environ, "PAYMENTS_DATABASE_URL": fresh_database, "PAYMENTS_NATS_URL": "",
           "PAYMENTS_HOST": "127.0.0.1", "PAYMENTS_PORT": str(port),
           "PAYMENTS_REGISTER_INSTANCE": "false", "PAYMENTS_PROVIDER_URL": provider.url}
    proc = subprocess.Popen([sys.executable, "-m", "payments"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, ready = time.monotonic() + 30, False
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready",
                                            timeout=1) as resp:
                    ready = resp.status == 200
                    break
            except OSError:
                time.sleep(0.1)
        assert ready
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
