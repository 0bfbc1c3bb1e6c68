"""The storefront's OAuth client is registered through identity's own command line at every
`mercato up`; a database error (exit 1) is asked again, a bad registration (exit 2) is not."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from mercato.runtime import supervisor

# Stands in for `python -m identity register-client`: answers with the next exit code of its
# script, one per run, and notes what it was given on standard input.
FAKE_CLI = """
import pathlib, sys
state = pathlib.Path(sys.argv[1])
codes = state.read_text().split()
state.write_text(" ".join(codes[1:]))
(state.parent / "stdin").write_text(sys.stdin.read())
code = int(codes[0])
if code:
    print("error: DBAPIError: current transaction is aborted" if code == 1
          else "error: a redirect URI must be absolute", file=sys.stderr)
else:
    print("created")
sys.exit(code)
"""


def _rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, codes: str) -> Any:
    state = tmp_path / "codes"
    state.write_text(codes)
    monkeypatch.setattr(supervisor, "register_storefront_client_argv",
                        lambda python, port: [python, "-c", FAKE_CLI, str(state)])
    monkeypatch.setattr(supervisor, "service_secrets",
                        lambda home, service: {"STOREFRONT_OAUTH_CLIENT_SECRET": "s3cret"})
    monkeypatch.setattr(supervisor.asyncio, "sleep", _no_sleep)
    failures: list[str] = []
    rig = SimpleNamespace(services={"identity": "identity"}, home=None, base_env={},
                          db_urls={"identity": "postgresql://x"}, nats=SimpleNamespace(url="n"),
                          ports=SimpleNamespace(edge=1),
                          fail=lambda message, process: failures.append(message))
    rig.failures, rig.state = failures, state
    return rig


async def _no_sleep(_: float) -> None:
    return None


async def test_a_database_error_is_asked_again(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    rig = _rig(tmp_path, monkeypatch, "1 1 0")
    await supervisor.Supervisor.register_oauth_clients(rig)
    assert rig.failures == []
    assert rig.state.read_text() == ""  # three runs: two refused, the third registered
    assert (tmp_path / "stdin").read_text() == "s3cret\n"


async def test_it_gives_up_after_the_last_attempt_and_says_why(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rig = _rig(tmp_path, monkeypatch, "1 " * supervisor.REGISTRATION_ATTEMPTS + "0")
    await supervisor.Supervisor.register_oauth_clients(rig)
    assert rig.failures == ["registering the storefront's OAuth client failed: "
                            "error: DBAPIError: current transaction is aborted"]
    assert rig.state.read_text() == "0"


async def test_a_bad_registration_is_not_asked_again(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    rig = _rig(tmp_path, monkeypatch, "2 0")
    await supervisor.Supervisor.register_oauth_clients(rig)
    assert rig.failures == ["registering the storefront's OAuth client failed: "
                            "error: a redirect URI must be absolute"]
    assert rig.state.read_text() == "0"

