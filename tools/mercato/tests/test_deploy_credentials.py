"""`mercato deploy credentials`: the cluster's broker users are the laptop's, with keys of
their own, every service gets a signing key all others trust, and no key leaves the directory
it is written to."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import nkeys
import yaml
from mercato.deploy.credentials import write
from mercato.runtime.broker import CLI, permissions_of
from mercato.runtime.services import SERVICES


def test_every_service_and_the_cli_get_a_user_with_the_laptops_permissions(tmp_path: Path) -> None:
    identities = write(tmp_path)
    assert [i.name for i in identities] == [*SERVICES, CLI]
    values = yaml.safe_load((tmp_path / "nats-auth-values.yaml").read_text())
    users = values["config"]["merge"]["authorization"]["users"]
    for identity, user in zip(identities, users, strict=True):
        seed = (tmp_path / "seeds" / f"{identity.name}.nk").read_text()
        assert seed == identity.seed and "\n" not in seed
        assert stat.S_IMODE((tmp_path / "seeds" / f"{identity.name}.nk").stat().st_mode) == 0o600
        assert nkeys.from_seed(bytearray(seed.encode())).public_key.decode() == user["nkey"]
        assert user["permissions"] == permissions_of(identity.name).as_config()
    assert identity.seed not in (tmp_path / "nats-auth-values.yaml").read_text()
    script = (tmp_path / "create-secrets.sh").read_text()
    assert script.count("create secret generic") == 2 * len(SERVICES)
    assert "order-history-nats" in script and "seeds/order_history.nk" in script


def test_a_second_run_keeps_the_keys_and_a_bad_seed_is_refused(tmp_path: Path) -> None:
    first = {i.name: i.public_key for i in write(tmp_path)}
    assert {i.name: i.public_key for i in write(tmp_path)} == first
    (tmp_path / "seeds" / "catalog.nk").write_text("not a seed")
    try:
        write(tmp_path)
    except ValueError as exc:
        assert "catalog.nk does not hold an NKey user seed" in str(exc)
    else:
        raise AssertionError("a corrupt seed was accepted")


def test_the_command_refuses_to_write_keys_into_the_repository() -> None:
    repo = Path(__file__).resolve().parents[3]
    res = subprocess.run([sys.executable, "-m", "mercato.cli", "deploy", "credentials", "--out",
                          str(repo / "nats-keys")], capture_output=True, text=True, check=False)
    assert res.returncode == 2 and "inside the repository" in res.stderr
    assert "Traceback" not in res.stderr and not (repo / "nats-keys").exists()


def test_each_service_signs_with_its_own_key_and_every_service_trusts_all(
        tmp_path: Path) -> None:
    import json

    from chassis.registry_keys import public_key_of
    from chassis.service_identity import CallerSigner, CallerVerifier

    write(tmp_path)
    script = (tmp_path / "create-secrets.sh").read_text()
    trusted = json.loads(script.split("--from-literal=trusted='")[1].split("'")[0])
    assert sorted(trusted) == sorted(SERVICES)
    for service in SERVICES:
        key = tmp_path / "seeds" / f"{service}.service-key"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert public_key_of(key.read_text()) == trusted[service]
        assert key.read_text() not in script
    token = CallerSigner("orders", (tmp_path / "seeds" / "orders.service-key").read_text()
                         ).token_for("identity")
    assert CallerVerifier("identity", trusted).verify(token) == "orders"
