"""Running a service's Alembic migrations: one URL source, one lock, both dialects, and a
release that tolerates the schema of the release after it.

Two releases of a service run against one database at times: during a rollout, old and new pods
side by side; after `kubectl rollout undo`, the previous release alone on the schema the newer
one migrated. Migrations therefore expand and contract (deploy/README.md, "Releasing"), so that
the previous release's code works on the newer schema, and its migration step, which cannot
know the newer revision, must neither fail nor touch it.

alembic_version holds only the newest revision, which an older release's scripts do not know: by
itself it cannot tell a schema one release ahead from one of another lineage (another branch,
another service's database). So every migration also records each revision it applies, with its
parents, in HISTORY_TABLE; from the stored revision an older release follows those records back
and starts only if they reach its own head, that is if the schema is its own plus revisions
applied after it. Where the records do not reach (a schema migrated by other means) it cannot
tell, and refuses, as it does for a lineage that bypasses its head.
"""

import asyncio
import logging
import re
import zlib
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from alembic import context, op
from alembic.autogenerate.api import AutogenContext
from alembic.config import Config
from alembic.runtime.migration import MigrationContext, MigrationInfo
from alembic.script import ScriptDirectory
from alembic.script.revision import Revision
from alembic.util import CommandError
from sqlalchemy import Column, DateTime, MetaData, String, Table, Text, func, pool, select, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.schema import CreateTable, DropTable
from sqlalchemy.types import TypeDecorator

from servicekit.database import (
    ONLY_ON_DIALECT,
    fold_case_like_postgres,
    prepare_sqlite_path,
    trigram_index_options,
)

DATABASE_URL_ATTRIBUTE = "database_url"
LOCK_TIMEOUT_ATTRIBUTE = "lock_timeout"
# Set (by `python -m servicekit.migrate`, the deployments' migration step) to leave a schema newer
# than this release's head as it is rather than fail on its unknown revision.
ACCEPT_NEWER_SCHEMA_ATTRIBUTE = "accept_newer_schema"
# How long a migration waits for a lock that a running transaction holds before it fails. An
# ALTER TABLE waiting for its lock makes every later query of the table wait behind it, so a
# migration that cannot start soon had better fail (and be retried) than stall the service.
DEFAULT_LOCK_TIMEOUT = "10s"


log = logging.getLogger(__name__)

# Each applied revision and its parents (space-separated; none for the first), written in the
# migration's own transaction. It is bookkeeping, not part of the models: autogenerate skips it.
HISTORY_TABLE = "alembic_version_history"
_history = Table(
    HISTORY_TABLE,
    MetaData(),
    Column("revision", String(32), primary_key=True),
    Column("down_revision", Text, nullable=True),
    Column("applied_at", DateTime(timezone=True), server_default=func.now(), nullable=False),
)


class SchemaOfAnotherLineage(CommandError):
    """The database is at a revision this release does not know and cannot place after its own."""


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


def create_idempotency_keys_table() -> None:
    """In a migration: the table of servicekit.idempotency, as it was first made.

    Every service has one, the same. A later change to it is a migration of its own.
    """
    op.create_table(
        "idempotency_keys",
        sa.Column("caller_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("request", sa.String(length=300), nullable=False),
        sa.Column("body_digest", sa.String(length=64), nullable=False),
        sa.Column("status", sa.SmallInteger(), nullable=True),
        sa.Column("headers", sa.JSON(), nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("caller_id", "key", name=op.f("pk_idempotency_keys")),
    )
    op.create_index("ix_idempotency_keys_created_at", "idempotency_keys", ["created_at"])


def drop_idempotency_keys_table() -> None:
    """In a migration: undo create_idempotency_keys_table."""
    op.drop_index("ix_idempotency_keys_created_at", table_name="idempotency_keys")
    op.drop_table("idempotency_keys")


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
        context.configure(
            url=url,
            target_metadata=metadata,
            literal_binds=True,
            on_version_apply=_record_history,
        )
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


def _include_object(dialect: str) -> Callable[..., bool]:
    # Leaves out the history of revisions, and objects of the models made for another dialect
    # only (see substring_search_index).
    def include_object(obj: Any, name: Any, type_: str, _reflected: bool, _other: Any) -> bool:
        if type_ == "table" and name == HISTORY_TABLE:
            return False
        only_on = obj.info.get(ONLY_ON_DIALECT) if type_ == "index" else None
        return only_on is None or only_on == dialect

    return include_object


def parent_revisions(revision: Revision) -> tuple[str, ...]:
    """The revisions `revision` follows (several for a merge, none for the first)."""
    down = revision.down_revision
    if down is None:
        return ()
    return (down,) if isinstance(down, str) else tuple(down)


def _record_history(
    ctx: MigrationContext,
    step: MigrationInfo,
    heads: Collection[str],
    run_args: Mapping[str, Any],  # alembic passes every argument by name
) -> None:
    """After each step (upgrade, downgrade or stamp), in its transaction: the revisions it
    brought in, with their parents as the scripts declare them, or their removal.

    At base the table goes too, as every other table of the schema has.
    """
    ctx.execute(CreateTable(_history, if_not_exists=True))
    ctx.execute(_history.delete().where(_history.c.revision.in_(step.up_revision_ids)))
    if step.is_upgrade:
        for revision in step.up_revision_ids:
            script = step.revision_map.get_revision(revision)
            assert script is not None, revision
            parents = " ".join(parent_revisions(script)) or None
            ctx.execute(_history.insert().values(revision=revision, down_revision=parents))
    elif not heads:
        ctx.execute(DropTable(_history))


def _recorded_parents(connection: Connection) -> dict[str, tuple[str, ...]]:
    if not connection.dialect.has_table(connection, HISTORY_TABLE):
        return {}
    rows = connection.execute(select(_history.c.revision, _history.c.down_revision))
    return {revision: tuple((parents or "").split()) for revision, parents in rows}


def _leave_newer_schema(connection: Connection, scripts: ScriptDirectory) -> bool:
    """True when the database is at revisions this release does not know, which follow its own
    head; then nothing is to be done. Raises SchemaOfAnotherLineage when they are unknown and
    cannot be shown to follow it. False when every stored revision is known: migrate as usual.
    """
    stored = context.get_context().get_current_heads()
    known = {script.revision: parent_revisions(script) for script in scripts.walk_revisions()}
    if all(revision in known for revision in stored):
        return False
    recorded = _recorded_parents(connection)
    heads = scripts.get_heads()
    # Every revision the stored ones descend from: by the scripts where they know it, by the
    # records where they do not.
    reached: set[str] = set()
    unplaced: set[str] = set()
    pending = list(stored)
    while pending:
        revision = pending.pop()
        if revision in reached:
            continue
        reached.add(revision)
        parents = known.get(revision, recorded.get(revision))
        if parents is None:
            unplaced.add(revision)
        else:
            pending.extend(parents)
    ours, theirs = ", ".join(heads), ", ".join(stored)
    if not set(heads) <= reached:
        reason = (
            f"no record of {', '.join(sorted(unplaced))} in {HISTORY_TABLE}"
            if unplaced
            else f"its history bypasses {ours}"
        )
        raise SchemaOfAnotherLineage(
            f"the database is at {theirs}, which this release (head {ours}) does not know, and "
            f"cannot be shown to follow it ({reason}): refusing to start on it"
        )
    log.warning(
        "the database schema (%s) is newer than this release (%s) and follows it: "
        "nothing to migrate, starting on it as it is",
        theirs,
        ours,
    )
    return True


def _migrate(connection: Connection, metadata: MetaData, lock_key: int, lock_timeout: str) -> None:
    is_sqlite = connection.dialect.name == "sqlite"
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=is_sqlite,  # SQLite alters tables by copying them
        compare_type=True,
        compare_server_default=True,
        render_item=_render_item,
        include_object=_include_object(connection.dialect.name),
        on_version_apply=_record_history,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key})
            # After the advisory lock: a replica waits as long as another one migrates.
            connection.execute(
                text("SELECT set_config('lock_timeout', :timeout, true)"),
                {"timeout": lock_timeout},
            )
        # Under the lock: the newer release may be migrating right now.
        accept_newer = context.config.attributes.get(ACCEPT_NEWER_SCHEMA_ATTRIBUTE, False)
        if accept_newer and _leave_newer_schema(connection, context.script):
            return
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
