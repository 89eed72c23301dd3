"""Password hashing: argon2id through pwdlib, off the event loop, a bounded number at a time."""

import asyncio

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from users_service.settings import UsersSettings


class Passwords:
    """Hashes and verifies passwords in worker threads, at most `concurrency` at once."""

    def __init__(self, settings: UsersSettings) -> None:
        self._hash = PasswordHash(
            (
                Argon2Hasher(
                    time_cost=settings.password_hash_time_cost,
                    memory_cost=settings.password_hash_memory_cost,
                    parallelism=settings.password_hash_parallelism,
                ),
            )
        )
        self._slots = asyncio.Semaphore(settings.password_hashing_concurrency)
        # What a login of an unknown email (or of an account without a password) is checked
        # against, so that it costs what a wrong password costs.
        self._dummy_hash = self._hash.hash("a password that no account has")

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self._hash.hash, password)

    async def verify(self, password: str, password_hash: str | None) -> bool:
        """Whether `password` matches; with no hash, as slow a False as a wrong password."""
        async with self._slots:
            matches = await asyncio.to_thread(
                self._hash.verify, password, password_hash or self._dummy_hash
            )
        return matches and password_hash is not None
