"""Two releases on one schema: what a revision may change (expand/contract), and a release's
migration step on the schema of the release after it, on a scratch service's migrations."""

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from alembic import command
from alembic.config import Config
from alembic.util import CommandError

from servicekit.migrations import (
    ACCEPT_NEWER_SCHEMA_ATTRIBUTE,
    HISTORY_TABLE,
    SchemaOfAnotherLineage,
    alembic_config,
)
from servicekit.testing import libpq_url
from servicekit.testing.expand_contract import unmarked_contract_steps
from servicekit.testing.plugin import MakeDatabase


@dataclass(frozen=True)
class Revision:
    """A migration of the scratch service: its id, parent, and the bodies of its functions."""

    revision: str
    down_revision: str | None
    upgrade: str = "pass"
    downgrade: str = "pass"
    module_lines: str = ""


REVISION_FILE = '''"""{revision}"""

import sqlalchemy as sa
from alembic import op

revision = {revision!r}
down_revision = {down_revision!r}
branch_labels = None
depends_on = None
{module_lines}

def upgrade() -> None:
    {upgrade}


def downgrade() -> None:
    {downgrade}
'''

ENV_FILE = """from sqlalchemy import MetaData

from servicekit.migrations import run_migrations

run_migrations(MetaData(), lock_name="scratch", default_url=lambda: "sqlite+aiosqlite://")
"""

MakeRelease = Callable[[str, Sequence[Revision]], Path]

# A table of items, then a column of it, then another table: each revision only expands.
ITEMS = Revision(
    "a1",
    None,
    upgrade='op.create_table("items", sa.Column("id", sa.Integer, primary_key=True))',
    downgrade='op.drop_table("items")',
)
NAMES = Revision(
    "b2",
    "a1",
    upgrade='op.add_column("items", sa.Column("name", sa.Text, nullable=True))',
    downgrade='op.drop_column("items", "name")',
)
TAGS = Revision(
    "c3",
    "b2",
    upgrade='op.create_table("tags", sa.Column("id", sa.Integer, primary_key=True))',
    downgrade='op.drop_table("tags")',
)
# What another lineage applied after ITEMS instead of NAMES.
PRICES = Revision(
    "x9",
    "a1",
    upgrade='op.add_column("items", sa.Column("price", sa.Integer, nullable=True))',
)


@pytest.fixture
def make_release(tmp_path: Path) -> MakeRelease:
    """A factory `(release, revisions) -> alembic.ini`: the scratch service's migrations as the
    image of that release holds them, with the services' env.py."""

    def make(release: str, revisions: Sequence[Revision]) -> Path:
        directory = tmp_path / release
        versions = directory / "migrations" / "versions"
        versions.mkdir(parents=True)
        (directory / "alembic.ini").write_text("[alembic]\nscript_location = %(here)s/migrations\n")
        (directory / "migrations" / "env.py").write_text(ENV_FILE)
        for revision in revisions:
            (versions / f"{revision.revision}.py").write_text(
                REVISION_FILE.format(**vars(revision))
            )
        return directory / "alembic.ini"

    return make


@pytest.fixture
def database(make_database: MakeDatabase) -> str:
    return make_database("postgresql", "releases")


# The expand/contract rule.

CONTRACTING = {
    "a dropped column": 'op.drop_column("items", "label")',
    "a dropped table": 'op.drop_table("items")',
    "a dropped table, in SQL": 'op.execute("DROP TABLE items")',
    "a renamed table": 'op.rename_table("items", "things")',
    "a renamed column": 'op.alter_column("items", "label", new_column_name="title")',
    "a NOT NULL column without a default": (
        'op.add_column("items", sa.Column("size", sa.Integer, nullable=False))'
    ),
    "a column made NOT NULL": 'op.alter_column("items", "label", nullable=False)',
    "a default dropped": 'op.alter_column("items", "label", server_default=None)',
}
EXPANDING = {
    "a nullable column": 'op.add_column("items", sa.Column("size", sa.Integer))',
    "a NOT NULL column with a default": (
        'op.add_column("items", sa.Column("size", sa.Integer, server_default="0", nullable=False))'
    ),
    "a table": 'op.create_table("tags", sa.Column("id", sa.Integer, primary_key=True))',
    "an index": 'op.create_index("ix_items_label", "items", ["label"])',
    "a dropped index": 'op.drop_index("ix_items_label", table_name="items")',
    "a column made nullable": 'op.alter_column("items", "label", nullable=True)',
}
LABELLED_ITEMS = Revision(
    "a1",
    None,
    upgrade='op.create_table("items", sa.Column("id", sa.Integer, primary_key=True), '
    'sa.Column("label", sa.Text, server_default="", nullable=False))',
    downgrade='op.drop_table("items")',
)


@pytest.mark.parametrize("change", CONTRACTING.values(), ids=CONTRACTING.keys())
def test_a_revision_that_contracts_the_schema_unmarked_is_reported(
    make_release: MakeRelease, change: str
) -> None:
    alembic_ini = make_release("next", [LABELLED_ITEMS, Revision("b2", "a1", upgrade=change)])

    assert list(unmarked_contract_steps(alembic_ini)) == ["b2.py"]


@pytest.mark.parametrize("change", EXPANDING.values(), ids=EXPANDING.keys())
def test_a_revision_that_expands_the_schema_passes(make_release: MakeRelease, change: str) -> None:
    alembic_ini = make_release("next", [LABELLED_ITEMS, Revision("b2", "a1", upgrade=change)])

    assert unmarked_contract_steps(alembic_ini) == {}


def test_a_contract_step_passes_once_it_names_the_release_that_stopped_using_it(
    make_release: MakeRelease,
) -> None:
    drop = CONTRACTING["a dropped column"]
    marked = make_release(
        "marked",
        [
            LABELLED_ITEMS,
            Revision("b2", "a1", drop, module_lines='contract = "0.4.0 stopped reading labels"'),
        ],
    )
    unnamed = make_release(
        "unnamed", [LABELLED_ITEMS, Revision("b2", "a1", drop, module_lines="contract = True")]
    )

    assert unmarked_contract_steps(marked) == {}
    [(revision, [change])] = unmarked_contract_steps(unnamed).items()
    assert revision == "b2.py"
    assert change == "drops a column: ALTER TABLE items DROP COLUMN label"


# A release's migration step on another release's schema.


async def _upgrade(alembic_ini: Path, url: str, *, accept_newer_schema: bool = True) -> None:
    """The migration step of the release whose alembic.ini it is (python -m servicekit.migrate)."""
    config = alembic_config(alembic_ini, url)
    config.attributes[ACCEPT_NEWER_SCHEMA_ATTRIBUTE] = accept_newer_schema
    # env.py runs its own event loop, so it gets a thread of its own.
    await asyncio.to_thread(command.upgrade, config, "heads")


async def _schema(url: str) -> tuple[list[str], dict[str, str | None], set[str]]:
    """alembic_version, the recorded history and the tables of the scratch database."""
    async with await psycopg.AsyncConnection.connect(libpq_url(url)) as connection:
        tables = {
            row[0]
            for row in await (
                await connection.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                )
            ).fetchall()
        }
        version = [
            row[0]
            for row in await (
                await connection.execute("SELECT version_num FROM alembic_version")
            ).fetchall()
        ]
        history: dict[str, str | None] = {}
        if HISTORY_TABLE in tables:
            rows = await connection.execute(
                f"SELECT revision, down_revision FROM {HISTORY_TABLE}"  # noqa: S608 - a constant
            )
            history = dict(await rows.fetchall())
    return version, history, tables - {"alembic_version", HISTORY_TABLE}


async def test_each_revision_applied_is_recorded_with_its_parent_and_forgotten_when_undone(
    make_release: MakeRelease, database: str
) -> None:
    alembic_ini = make_release("current", [ITEMS, NAMES])
    config = alembic_config(alembic_ini, database)

    await _upgrade(alembic_ini, database)
    upgraded = await _schema(database)
    await asyncio.to_thread(command.downgrade, config, "a1")
    downgraded = await _schema(database)
    await asyncio.to_thread(command.downgrade, config, "base")

    assert upgraded == (["b2"], {"a1": None, "b2": "a1"}, {"items"})
    assert downgraded == (["a1"], {"a1": None}, {"items"})
    # At base nothing of the schema is left, its history included.
    assert await _schema(database) == ([], {}, set())


async def test_a_database_behind_the_release_is_migrated_to_its_head(
    make_release: MakeRelease, database: str
) -> None:
    await _upgrade(make_release("previous", [ITEMS]), database)

    await _upgrade(make_release("current", [ITEMS, NAMES, TAGS]), database)

    assert await _schema(database) == (
        ["c3"],
        {"a1": None, "b2": "a1", "c3": "b2"},
        {"items", "tags"},
    )


async def test_a_schema_newer_than_the_release_is_left_as_it_is_and_the_step_says_so(
    make_release: MakeRelease, database: str, caplog: pytest.LogCaptureFixture
) -> None:
    await _upgrade(make_release("next", [ITEMS, NAMES, TAGS]), database)
    migrated = await _schema(database)
    caplog.set_level(logging.INFO, logger="servicekit.migrations")

    await _upgrade(make_release("current", [ITEMS, NAMES]), database)

    assert await _schema(database) == migrated
    [line] = [record for record in caplog.records if record.name == "servicekit.migrations"]
    assert line.levelno == logging.WARNING
    assert line.getMessage() == (
        "the database schema (c3) is newer than this release (b2) and follows it: "
        "nothing to migrate, starting on it as it is"
    )


async def test_alembic_itself_still_refuses_a_revision_it_does_not_know(
    make_release: MakeRelease, database: str
) -> None:
    await _upgrade(make_release("next", [ITEMS, NAMES, TAGS]), database)

    with pytest.raises(CommandError, match="Can't locate revision identified by 'c3'"):
        await _upgrade(make_release("current", [ITEMS, NAMES]), database, accept_newer_schema=False)


async def test_a_schema_of_another_lineage_is_refused_and_left_as_it_is(
    make_release: MakeRelease, database: str
) -> None:
    await _upgrade(make_release("elsewhere", [ITEMS, PRICES]), database)
    migrated = await _schema(database)

    with pytest.raises(SchemaOfAnotherLineage, match=r"at x9, .* \(its history bypasses b2\)"):
        await _upgrade(make_release("current", [ITEMS, NAMES]), database)

    assert await _schema(database) == migrated


async def test_an_unknown_revision_without_a_record_is_refused(
    make_release: MakeRelease, database: str
) -> None:
    await _upgrade(make_release("next", [ITEMS, NAMES, TAGS]), database)
    async with await psycopg.AsyncConnection.connect(libpq_url(database)) as connection:
        await connection.execute(f"DROP TABLE {HISTORY_TABLE}")

    with pytest.raises(SchemaOfAnotherLineage, match=f"no record of c3 in {HISTORY_TABLE}"):
        await _upgrade(make_release("current", [ITEMS, NAMES]), database)


def test_the_step_renders_its_sql_without_a_database(
    make_release: MakeRelease, capsys: pytest.CaptureFixture[str]
) -> None:
    alembic_ini = make_release("current", [ITEMS, NAMES])
    config = Config(str(alembic_ini))
    config.attributes["database_url"] = "postgresql+psycopg://offline@offline.invalid/offline"

    command.upgrade(config, "heads", sql=True)

    rendered = capsys.readouterr().out
    assert "CREATE TABLE items" in rendered
    recorded = "INSERT INTO alembic_version_history (revision, down_revision) VALUES ('b2', 'a1')"
    assert recorded in rendered
