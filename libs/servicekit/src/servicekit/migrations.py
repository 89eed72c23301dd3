"""Running a service's Alembic migrations: one URL source, one lock, both dialects."""

import asyncio
import re
import zlib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from alembic import context, op
from alembic.autogenerate.api import AutogenContext
from alembic.config import Config
from sqlalchemy import MetaData, pool, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.types import TypeDecorator

from servicekit.database import (
    ONLY_ON_DIALECT,
    fold_case_like_postgres,
    prepare_sqlite_path,
    trigram_index_options,
)

DATABASE_URL_ATTRIBUTE = "database_url"
LOCK_TIMEOUT_ATTRIBUTE = "lock_timeout"
# How long a migration waits for a lock that a running transaction holds before it fails. An
# ALTER TABLE waiting for its lock makes every later query of the table wait behind it, so a
# migration that cannot start soon had better fail (and be retried) than stall the service.
DEFAULT_LOCK_TIMEOUT = "10s"


def alembic_config(ini_path: Path, database_url: str) -> Config:
    """An Alembic Config for a service's alembic.ini, pointed at `database_url`."""
    config = Config(str(ini_path))
    config.attributes[DATABASE_URL_ATTRIBUTE] = database_url
    return config


def _option(name: str, default: Callable[[], str]) -> str:
    # Precedence: set by code (tests), then `alembic -x name=...`, then the default.
    config = context.config
    return str(
        config.attributes.get(name)
        or context.get_x_argument(as_dictionary=True).get(name)
        or default()
    )


def create_substring_search_indexes(table: str, columns: Mapping[str, str]) -> None:
    """In a migration: trigram indexes, named by the keys, on the columns (Postgres only).

    They are what `substring_search_index` declares in the models. pg_trgm is created first:
    it is a trusted extension, so the database's owner may. On SQLite nothing is created.
    An index that exists already is kept: on a large table in use, an operator can build it
    beforehand with CREATE INDEX CONCURRENTLY, which does not block writes as this does.
    """
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for name, column in columns.items():
        op.create_index(name, table, [column], **trigram_index_options(column), if_not_exists=True)


def rebuild_sqlite_indexes(*names: str) -> None:
    """In a migration: rebuild these indexes on SQLite, after a change of a function they use.

    Nothing to do on Postgres. A unique index fails to rebuild if the rows now collide.
    """
    if op.get_bind().dialect.name == "sqlite":
        for name in names:
            op.execute(f"REINDEX {name}")


def drop_substring_search_indexes(table: str, names: Iterable[str]) -> None:
    """In a migration: undo create_substring_search_indexes, leaving pg_trgm to other users."""
    if op.get_bind().dialect.name != "postgresql":
        return
    for name in names:
        op.drop_index(name, table_name=table)


def migration_lock_key(lock_name: str) -> int:
    """The Postgres advisory lock key that serialises migrations of one service's database."""
    return zlib.crc32(f"alembic:{lock_name}".encode())


def run_migrations(metadata: MetaData, *, lock_name: str, default_url: Callable[[], str]) -> None:
    """The body of a service's migrations/env.py.

    On Postgres the migration runs under a transaction-scoped advisory lock, so processes that
    start at once run it one after the other; the later ones find the schema at head. Once it
    holds that lock, it waits at most `lock_timeout` (`-x lock_timeout=...`, Postgres's units,
    `0` for no limit; DEFAULT_LOCK_TIMEOUT) for any other lock, then fails and changes nothing.
    """
    url = _option(DATABASE_URL_ATTRIBUTE, default_url)
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    lock_timeout = _option(LOCK_TIMEOUT_ATTRIBUTE, lambda: DEFAULT_LOCK_TIMEOUT)
    asyncio.run(_run_online(url, metadata, migration_lock_key(lock_name), lock_timeout))


async def _run_online(url: str, metadata: MetaData, lock_key: int, lock_timeout: str) -> None:
    prepare_sqlite_path(make_url(url))
    engine = create_async_engine(url, poolclass=pool.NullPool)
    fold_case_like_postgres(engine)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_migrate, metadata, lock_key, lock_timeout)
    finally:
        await engine.dispose()


def _render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    # Migrations stay independent of application code: a TypeDecorator is written as its impl.
    if type_ == "type" and isinstance(obj, TypeDecorator):
        autogen_context.imports.add("import sqlalchemy as sa")
        return f"sa.{obj.impl!r}"
    return False


def _on_dialect(dialect: str) -> Callable[..., bool]:
    # Objects of the models made for another dialect only (see substring_search_index).
    def include_object(obj: Any, _name: Any, type_: str, _reflected: bool, _other: Any) -> bool:
        only_on = obj.info.get(ONLY_ON_DIALECT) if type_ == "index" else None
        return only_on is None or only_on == dialect

    return include_object


def _migrate(connection: Connection, metadata: MetaData, lock_key: int, lock_timeout: str) -> None:
    is_sqlite = connection.dialect.name == "sqlite"
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=is_sqlite,  # SQLite alters tables by copying them
        compare_type=True,
        compare_server_default=True,
        render_item=_render_item,
        include_object=_on_dialect(connection.dialect.name),
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key})
            # After the advisory lock: a replica waits as long as another one migrates.
            connection.execute(
                text("SELECT set_config('lock_timeout', :timeout, true)"),
                {"timeout": lock_timeout},
            )
        context.run_migrations()


_CREATE_TABLE = re.compile(r'^CREATE TABLE\s+"?(\w+)"?\s*\(')
_TABLE_PRIMARY_KEY = re.compile(r",\s*CONSTRAINT (\w+) PRIMARY KEY \(id\)")
_ID_COLUMN = re.compile(r"\(\s*id INTEGER NOT NULL")
_AUTOINCREMENT_ID = re.compile(r"id INTEGER NOT NULL CONSTRAINT (\w+) PRIMARY KEY AUTOINCREMENT")


def _with_autoincrement(create_table: str) -> str:
    primary_key = _TABLE_PRIMARY_KEY.search(create_table)
    if primary_key is None:  # AUTOINCREMENT already, or not a table of integer ids
        return create_table
    without = create_table[: primary_key.start()] + create_table[primary_key.end() :]
    column = f"(\n\tid INTEGER NOT NULL CONSTRAINT {primary_key[1]} PRIMARY KEY AUTOINCREMENT"
    return _ID_COLUMN.sub(lambda _: column, without, count=1)


def _without_autoincrement(create_table: str) -> str:
    primary_key = _AUTOINCREMENT_ID.search(create_table)
    if primary_key is None:
        return create_table
    head, tail = create_table[: primary_key.start()], create_table[primary_key.end() :]
    without = f"{head}id INTEGER NOT NULL{tail}"
    end = without.rindex(")")
    return f"{without[:end].rstrip()}, \n\tCONSTRAINT {primary_key[1]} PRIMARY KEY (id)\n)"


def _rebuild_sqlite_table(table: str, new_definition: Callable[[str], str]) -> None:
    """Rebuild `table` from its own CREATE TABLE, changed; rows, indexes and triggers kept.

    SQLite's way to change what ALTER TABLE cannot (sqlite.org/lang_altertable.html, "making
    other kinds of table schema changes"): create the new table, copy the rows, drop the old
    one, rename the new one, create its indexes and triggers again from their own SQL. The
    migration's connection does not enforce foreign keys, so dropping a table that others
    reference neither fails nor cascades.
    """
    bind = op.get_bind()
    create_table = bind.execute(
        text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = :table"),
        {"table": table},
    ).scalar_one()
    dependents = list(
        bind.execute(
            text(
                "SELECT sql FROM sqlite_master WHERE tbl_name = :table"
                " AND type IN ('index', 'trigger') AND sql IS NOT NULL"
            ),
            {"table": table},
        ).scalars()
    )
    changed = new_definition(create_table)
    if changed == create_table:
        return
    rebuilt = f"{table}_rebuilt"
    op.execute(_CREATE_TABLE.sub(f"CREATE TABLE {rebuilt} (", changed, count=1))
    op.execute(f"INSERT INTO {rebuilt} SELECT * FROM {table}")  # noqa: S608 - our own names
    op.execute(f"DROP TABLE {table}")
    # Triggers of other tables name this one, which is gone until the rename: the legacy rename
    # leaves them unchecked and unchanged, as the rebuilt table takes the name they use.
    op.execute("PRAGMA legacy_alter_table = ON")
    op.execute(f"ALTER TABLE {rebuilt} RENAME TO {table}")
    op.execute("PRAGMA legacy_alter_table = OFF")
    for statement in dependents:
        op.execute(statement)


def never_reuse_sqlite_ids(*tables: str) -> None:
    """In a migration: make these tables' integer ids AUTOINCREMENT on SQLite, keeping rows.

    Without it SQLite gives a new row the largest id plus one, so deleting the newest row
    hands its id to the next: a client holding the old id (and its ETag) would then reach a
    different resource. Postgres identities and sequences never go back: nothing to do there.
    """
    if op.get_bind().dialect.name == "sqlite":
        for table in tables:
            _rebuild_sqlite_table(table, _with_autoincrement)


def reuse_sqlite_ids(*tables: str) -> None:
    """In a migration: undo never_reuse_sqlite_ids."""
    if op.get_bind().dialect.name == "sqlite":
        for table in tables:
            _rebuild_sqlite_table(table, _without_autoincrement)
