"""Signed registry entries: with trusted keys, readers (discovery and the JWKS fetch that
goes through it) see only instances whose own service signed their entry."""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict

import nats
import orjson
import pytest
from chassis import registry as reg
from chassis.discovery import Resolver
from chassis.registry_keys import SIGNATURE_FIELD, EntrySigner, TrustedKeys, new_key_pair

pytestmark = pytest.mark.integration


def _instance(service: str, instance_id: str, port: int) -> reg.Instance:
    now = time.time()
    return reg.Instance(service=service, instance_id=instance_id, host="127.0.0.1", port=port,
                        pid=1, started_at=now, heartbeat_at=now)


async def test_forged_entries_are_ignored_by_readers_with_trusted_keys(nats_url: str) -> None:
    # Unique names: the bucket lives as long as the test session's NATS.
    ident, other = f"identity{uuid.uuid4().hex[:8]}", f"catalog{uuid.uuid4().hex[:8]}"
    ident_private, ident_public = new_key_pair()
    other_private, other_public = new_key_pair()
    trusted = TrustedKeys({ident: ident_public, other: other_public})
    nc = await nats.connect(nats_url)
    try:
        genuine = reg.Registration(reg.RegistryClient(nc, signer=EntrySigner(ident_private)),
                                   service=ident, instance_id=f"{ident}-1", host="127.0.0.1",
                                   port=4001)
        await genuine.start()
        kv = await reg.open_bucket(nc)
        # Whoever can write to the broker but holds no service's key (a leaked broker
        # credential, a mistake in its permissions): an unsigned entry ...
        await kv.put(f"{ident}.{ident}-2", orjson.dumps(asdict(_instance(ident, f"{ident}-2",
                                                                         6661))))
        # ... one signed with a key of its own ...
        forged = asdict(_instance(ident, f"{ident}-3", 6662))
        forged[SIGNATURE_FIELD] = EntrySigner(new_key_pair()[0]).sign(forged)
        await kv.put(f"{ident}.{ident}-3", orjson.dumps(forged))
        # ... another service's valid signature on an entry naming identity ...
        claimed = asdict(_instance(ident, f"{ident}-4", 6663))
        claimed[SIGNATURE_FIELD] = EntrySigner(other_private).sign(claimed)
        await kv.put(f"{ident}.{ident}-4", orjson.dumps(claimed))
        # ... identity's genuine entry, copied under another service's key with a new port.
        copied = orjson.loads((await kv.get(f"{ident}.{ident}-1")).value)
        await kv.put(f"{other}.{ident}-1", orjson.dumps(copied))
        tampered = {**copied, "port": 6664}
        await kv.put(f"{ident}.{ident}-5", orjson.dumps({**tampered,
                                                        "instance_id": f"{ident}-5"}))

        checked = reg.RegistryClient(nc, trusted=trusted)
        assert [i.port for i in await checked.instances(ident)] == [4001]
        assert [i.port for i in await checked.instances()
                if i.service in (ident, other)] == [4001]
        # Service discovery (and so the JWKS URL http://identity/...) resolves to it alone.
        resolver = Resolver(lambda: checked)
        assert {await resolver.resolve_url(f"http://{ident}/.well-known/jwks.json")
                for _ in range(20)} == {"http://127.0.0.1:4001/.well-known/jwks.json"}
        # Without trusted keys (tests, tools) every entry counts: that is what signing fixes.
        assert len(await reg.RegistryClient(nc).instances(ident)) == 5
        await genuine.stop()
        assert await checked.instances(ident) == []
    finally:
        await nc.close()


def test_trusted_keys_and_signers_refuse_malformed_keys() -> None:
    with pytest.raises(ValueError, match="registry key of 'x'"):
        TrustedKeys({"x": "not-a-key"})
    with pytest.raises(ValueError, match="signing key"):
        EntrySigner("short")
    private, public = new_key_pair()
    fields = asdict(_instance("x", "x-1", 1))
    fields[SIGNATURE_FIELD] = EntrySigner(private).sign(fields)
    assert TrustedKeys({"x": public}).verifies("x", fields)
    assert not TrustedKeys({"x": public}).verifies("x", {**fields, "port": 2})
    assert not TrustedKeys({"x": public}).verifies("y", fields)
