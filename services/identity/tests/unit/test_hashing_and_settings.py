"""argon2id hashing off the event loop, and the settings that tune it."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from identity.adapters.hashing import Argon2Hasher
from identity.settings import IdentitySettings
from pydantic import ValidationError

CHEAP = {"time_cost": 1, "memory_cost_kib": 8, "parallelism": 1}


async def test_argon2id_round_trip() -> None:
    hasher = Argon2Hasher(**CHEAP)
    hashed = await hasher.hash("correct horse")
    assert hashed.startswith("$argon2id$v=19$m=8,t=1,p=1$")
    assert await hasher.verify(hashed, "correct horse")
    assert not await hasher.verify(hashed, "correct horsE")
    assert await hasher.hash("correct horse") != hashed  # salted


async def test_unreadable_hash_is_a_refusal_not_a_crash() -> None:
    hasher = Argon2Hasher(**CHEAP)
    assert not await hasher.verify("not-a-hash", "whatever")
    assert not await hasher.verify("$argon2id$v=19$m=8,t=1,p=1$broken", "whatever")
    assert hasher.needs_rehash("not-a-hash")


async def test_raised_cost_marks_old_hashes_for_rehash() -> None:
    old = await Argon2Hasher(**CHEAP).hash("correct horse")
    stronger = Argon2Hasher(time_cost=2, memory_cost_kib=16, parallelism=1)
    assert stronger.needs_rehash(old)
    assert await stronger.verify(old, "correct horse")  # old hashes still verify
    assert not stronger.needs_rehash(await stronger.hash("correct horse"))


class Spy:
    """Wraps argon2-cffi's hasher (slotted, so it cannot be patched) to watch its calls."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._lock = threading.Lock()
        self.threads: list[str] = []
        self.running = self.peak = 0

    def hash(self, password: str) -> str:
        with self._lock:
            self.threads.append(threading.current_thread().name)
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            time.sleep(0.01)  # long enough for calls that may overlap to overlap
            return str(self._inner.hash(password))
        finally:
            with self._lock:
                self.running -= 1


async def test_hashing_runs_off_the_event_loop_thread() -> None:
    hasher = Argon2Hasher(**CHEAP)
    spy = hasher._hasher = Spy(hasher._hasher)  # type: ignore[assignment]
    await hasher.hash("correct horse")
    assert spy.threads and spy.threads[0] != threading.current_thread().name


async def test_concurrent_hashes_are_bounded() -> None:
    hasher = Argon2Hasher(**CHEAP, max_concurrent=2)
    spy = hasher._hasher = Spy(hasher._hasher)  # type: ignore[assignment]
    await asyncio.gather(*(hasher.hash(f"password {i}") for i in range(8)))
    assert len(spy.threads) == 8 and spy.peak == 2


def test_settings_defaults_and_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDENTITY_ACCESS_TOKEN_TTL_S", "600")
    monkeypatch.setenv("CATALOG_ACCESS_TOKEN_TTL_S", "60")
    settings = IdentitySettings()
    assert settings.service_name == "identity" and settings.api_prefix == "/api/identity"
    assert settings.access_token_ttl_s == 600
    assert settings.refresh_token_ttl_s == 30 * 86_400
    assert (settings.login_free_failures, settings.login_base_delay_s,
            settings.login_max_delay_s) == (5, 1.0, 900.0)
    assert (settings.argon2_time_cost, settings.argon2_memory_cost_kib,
            settings.argon2_parallelism) == (3, 65_536, 4)
    assert settings.jwt_issuer == "mercato-identity" and settings.jwt_audience == "mercato"
    # A retired key outlives the last token it signed, with margin for caches and clocks.
    assert settings.key_publication_grace_s > settings.access_token_ttl_s


def test_settings_refuse_impossible_argon2_parameters() -> None:
    with pytest.raises(ValidationError):
        IdentitySettings(argon2_memory_cost_kib=16, argon2_parallelism=4)
    with pytest.raises(ValidationError):
        IdentitySettings(argon2_time_cost=0)


def test_signing_keys_must_be_encrypted_outside_development() -> None:
    with pytest.raises(ValidationError, match="IDENTITY_SIGNING_KEY_SECRET"):
        IdentitySettings(environment="production")
    settings = IdentitySettings(environment="production",
                                signing_key_secret="a long random secret from the vault")
    assert settings.signing_key_secret is not None
    assert IdentitySettings().signing_key_secret is None  # development may keep them clear
