"""argon2id password hashing, off the event loop.

One argon2 run takes tens of milliseconds of CPU (and ``memory_cost`` KiB of RAM) by design;
run inline it would stall every other request of the process, so it runs in a worker
thread (argon2-cffi releases the GIL). A semaphore bounds how many run at once, so a burst
of logins queues instead of exhausting memory.
"""

from __future__ import annotations

import asyncio

import structlog
from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

log = structlog.get_logger("identity.hashing")


class Argon2Hasher:
    def __init__(self, *, time_cost: int, memory_cost_kib: int, parallelism: int,
                 max_concurrent: int = 4) -> None:
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_cost_kib,
                                      parallelism=parallelism, type=Type.ID)
        self._slots = asyncio.Semaphore(max_concurrent)

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, password_hash: str, password: str) -> bool:
        async with self._slots:
            try:
                return await asyncio.to_thread(self._hasher.verify, password_hash, password)
            except VerifyMismatchError:
                return False
            except (VerificationError, InvalidHashError):
                # A stored hash that cannot be read is a data problem, not a wrong password;
                # still refuse the login, but leave a trace for operators.
                log.error("password_hash_unreadable")
                return False

    def needs_rehash(self, password_hash: str) -> bool:
        try:
            return self._hasher.check_needs_rehash(password_hash)
        except InvalidHashError:
            return True
