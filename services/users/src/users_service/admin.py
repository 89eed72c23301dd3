"""Create the first admin, or make an existing user one, in the configured users database.

    python -m users_service.admin --email E --password P [--name N]

The database is USERS_DATABASE_URL's (or the embedded default), migrated to head. An existing
user with that email (in any letter case) becomes an admin and gets that password, which
ends their sessions (refresh tokens).
"""

import argparse
import asyncio
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import ValidationError

from servicekit.database import Database, utcnow
from users_service.events import UserEvents
from users_service.models import User
from users_service.passwords import Passwords
from users_service.repository import RefreshTokenRepository, UserRepository
from users_service.schemas import UserCreate
from users_service.settings import UsersSettings


@dataclass(frozen=True)
class AdminAccount:
    user_id: int
    created: bool  # False: an existing user was promoted


async def create_admin(
    settings: UsersSettings, *, email: str, password: str, name: str | None = None
) -> AdminAccount:
    """Make the user with `email` an admin with `password`, creating them if need be."""
    data = UserCreate(email=email, name=name or email.partition("@")[0], password=password)
    password_hash = await Passwords(settings).hash(data.password)
    database = Database.from_settings(settings)
    try:
        async with database.transaction() as session:
            users = UserRepository(session)
            user = await users.get_by_email(data.email)
            if user is None:
                fields = data.model_dump(exclude={"password"})
                user = await users.add(User(**fields, is_admin=True, password_hash=password_hash))
                await UserEvents(session).created(user)
                return AdminAccount(user.id, created=True)
            user.is_admin = True
            user.password_hash = password_hash
            await users.flush()
            await RefreshTokenRepository(session).revoke_all_of(user.id, utcnow())
            return AdminAccount(user.id, created=False)
    finally:
        await database.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m users_service.admin", description=__doc__)
    parser.add_argument("--email", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--name")
    arguments = parser.parse_args(argv)
    try:
        account = asyncio.run(
            create_admin(
                UsersSettings(),
                email=arguments.email,
                password=arguments.password,
                name=arguments.name,
            )
        )
    except ValidationError as exc:
        # Only where and why: the input itself would echo the password.
        for error in exc.errors():
            print(f"{'.'.join(map(str, error['loc']))}: {error['msg']}", file=sys.stderr)
        return 2
    action = "created" if account.created else "promoted"
    print(f"{action} admin {arguments.email} (user {account.user_id})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
