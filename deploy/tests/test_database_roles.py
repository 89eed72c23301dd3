"""The two roles of a service's database, made by deploy/postgres/roles.sh, the script Compose's
roles step and the dev overlay's Postgres run: the migrations run as the role that owns the
schema, the service as one that reads and writes rows, those of the tables of migrations that come
after the roles included, and cannot create, alter or drop a table. Blog, on the tests' Postgres
server."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import URL, make_url

from blog_service.main import create_app
from blog_service.settings import BlogSettings
from deploy.tests.conftest import REPOSITORY
from deploy.tests.kubernetes_rules import DEPLOY
from servicekit.testing import (
    TEST_EVENTS_TOKEN,
    TEST_METRICS_TOKEN,
    TokenIssuer,
    asgi_client,
    libpq_url,
    migrate,
    running,
)
from servicekit.testing.plugin import MakeDatabase

ROLES_SCRIPT = DEPLOY / "postgres" / "roles.sh"
BLOG_MIGRATIONS = REPOSITORY / "services" / "blog" / "alembic.ini"
# Blog's revision before the one that adds the authors, event_cursors and parked_events tables:
# the migration to head then creates tables after the roles exist, as a later release would.
BEFORE_AUTHORS = "9915a9a480d2"
LATER_TABLES = {"authors", "event_cursors", "parked_events"}
ROW_PRIVILEGES = {"SELECT", "INSERT", "UPDATE", "DELETE"}
OTHER_TABLE_PRIVILEGES = {"TRUNCATE", "REFERENCES", "TRIGGER"}


@dataclass(frozen=True)
class Database:
    """A database with the two roles, as its superuser and as each role sees it."""

    superuser_url: URL
    migrator: str
    runtime: str
    migrator_url: str
    runtime_url: str


def run_roles_script(
    psql: Path, superuser_url: URL, roles: Mapping[str, str]
) -> subprocess.CompletedProcess[str]:
    """roles.sh on the database of `superuser_url`, connected as that superuser."""
    environment = {
        **os.environ,
        "PATH": f"{psql.parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PGHOST": superuser_url.host or "",
        "PGPORT": str(superuser_url.port or 5432),
        "PGPASSWORD": superuser_url.password or "",
        "POSTGRES_USER": superuser_url.username or "",
        "POSTGRES_DB": superuser_url.database or "",
        **roles,
    }
    return subprocess.run(
        ["/bin/sh", ROLES_SCRIPT], env=environment, capture_output=True, text=True, check=False
    )


def _connecting_as(url: URL, role: str, password: str) -> str:
    return url.set(username=role, password=password).render_as_string(hide_password=False)


@pytest.fixture(scope="module")
async def database(
    make_database: MakeDatabase, postgres_server_url: URL, psql: Path
) -> AsyncIterator[Database]:
    """A database whose roles roles.sh made first, then migrated as the migrator in two steps:
    to BEFORE_AUTHORS, then to head by `alembic upgrade head` with the settings a deployment
    gives its migration step (both URLs)."""
    superuser_url = make_url(make_database("postgresql", "blog_roles"))
    suffix = uuid.uuid4().hex[:8]  # roles belong to the whole server, which other runs share
    migrator, runtime = f"blog_migrator_{suffix}", f"blog_{suffix}"
    migrator_password, runtime_password = secrets.token_urlsafe(), secrets.token_urlsafe()
    made = run_roles_script(
        psql,
        superuser_url,
        {
            "MIGRATOR_ROLE": migrator,
            "MIGRATOR_PASSWORD": migrator_password,
            "RUNTIME_ROLE": runtime,
            "RUNTIME_PASSWORD": runtime_password,
        },
    )
    try:
        assert made.returncode == 0, made.stderr
        roles = Database(
            superuser_url,
            migrator,
            runtime,
            _connecting_as(superuser_url, migrator, migrator_password),
            _connecting_as(superuser_url, runtime, runtime_password),
        )
        await migrate(BLOG_MIGRATIONS, roles.migrator_url, BEFORE_AUTHORS)
        environment = {
            **os.environ,
            "BLOG_DATABASE_URL": roles.runtime_url,
            "BLOG_MIGRATION_DATABASE_URL": roles.migrator_url,
        }
        migration = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "alembic", "-c", str(BLOG_MIGRATIONS), "upgrade", "head",
            env=environment,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, errors = await migration.communicate()
        assert migration.returncode == 0, errors.decode()
        yield roles
    finally:
        with psycopg.connect(libpq_url(postgres_server_url), autocommit=True) as superuser:
            superuser.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(superuser_url.database or "")
                )
            )
            for role in (runtime, migrator):
                superuser.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.fixture
def as_superuser(database: Database) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(libpq_url(database.superuser_url), autocommit=True) as connection:
        yield connection


def test_the_migrator_owns_the_database_and_everything_the_migrations_made(
    database: Database, as_superuser: psycopg.Connection[tuple[object, ...]]
) -> None:
    owners = as_superuser.execute(
        "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'"
        " UNION SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
        " UNION SELECT pg_get_userbyid(extowner) FROM pg_extension WHERE extname = 'pg_trgm'"
    ).fetchall()
    assert owners == [(database.migrator,)]


def test_neither_role_is_a_superuser_or_may_make_roles_or_databases(
    database: Database, as_superuser: psycopg.Connection[tuple[object, ...]]
) -> None:
    powers = as_superuser.execute(
        "SELECT rolname, rolsuper OR rolcreaterole OR rolcreatedb OR rolbypassrls"
        " FROM pg_roles WHERE rolname IN (%s, %s)",
        (database.migrator, database.runtime),
    ).fetchall()
    assert sorted(powers) == sorted([(database.migrator, False), (database.runtime, False)])


async def test_the_service_reads_and_writes_rows_as_the_runtime_role(
    database: Database, token_issuer: TokenIssuer
) -> None:
    settings = BlogSettings(
        database_url=database.runtime_url,
        environment="test",
        auth_jwks_url=token_issuer.jwks_url,
        events_token=TEST_EVENTS_TOKEN,
        metrics_token=TEST_METRICS_TOKEN,
        consume_events=False,
    )
    app = create_app(settings)
    author = token_issuer.headers(7)
    async with running(app), asgi_client(app, headers=author) as client:
        # A post's tags are counted by a trigger the migrations made; its author gets a row in
        # a table of the later migration.
        body = {"title": "Roles", "content": "Two of them.", "tags": ["databases"]}
        created = await client.post("/posts/", json=body)
        assert created.status_code == 201, created.text
        read = await client.get(created.headers["Location"])
        tags = await client.get("/tags/")
        deleted = await client.delete(created.headers["Location"])
        gone = await client.get(created.headers["Location"])

    assert (read.status_code, read.json()) == (200, created.json())
    assert read.json()["author_id"] == 7
    assert [(tag["name"], tag["post_count"]) for tag in tags.json()] == [("databases", 1)]
    assert (deleted.status_code, gone.status_code) == (204, 404)


@pytest.mark.parametrize(
    "statement",
    [
        "CREATE TABLE intruder (id integer)",
        "DROP TABLE posts",
        "ALTER TABLE posts ADD COLUMN intruder integer",
        "CREATE INDEX intruder ON posts (title)",
        "TRUNCATE posts",
        "CREATE TEMPORARY TABLE intruder (id integer)",
        "CREATE SCHEMA intruder",
        "DROP EXTENSION pg_trgm CASCADE",
    ],
)
def test_the_runtime_role_cannot_change_the_schema(database: Database, statement: str) -> None:
    with (
        psycopg.connect(libpq_url(database.runtime_url), autocommit=True) as runtime,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        runtime.execute(statement)


def test_every_table_the_migrations_made_is_the_runtime_roles_to_read_and_write_alone(
    database: Database, as_superuser: psycopg.Connection[tuple[object, ...]]
) -> None:
    tables = [
        name
        for (name,) in as_superuser.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
    ]
    assert set(tables) >= LATER_TABLES
    for table in tables:
        held = {
            privilege
            for privilege in ROW_PRIVILEGES | OTHER_TABLE_PRIVILEGES
            if as_superuser.execute(
                "SELECT has_table_privilege(%s, %s, %s)", (database.runtime, table, privilege)
            ).fetchone()
            == (True,)
        }
        assert held == ROW_PRIVILEGES, table
    sequences = as_superuser.execute(
        "SELECT sequencename, has_sequence_privilege(%s, sequencename, 'USAGE')"
        " FROM pg_sequences WHERE schemaname = 'public'",
        (database.runtime,),
    ).fetchall()
    assert sequences
    assert all(usable for _name, usable in sequences), sequences


def test_the_script_refuses_a_runtime_role_that_may_do_more(database: Database, psql: Path) -> None:
    password = secrets.token_urlsafe()
    superuser = database.superuser_url.username or ""

    refused = run_roles_script(
        psql,
        database.superuser_url,
        {
            "MIGRATOR_ROLE": database.migrator,
            "MIGRATOR_PASSWORD": password,
            "RUNTIME_ROLE": superuser,
            "RUNTIME_PASSWORD": password,
        },
    )

    assert refused.returncode != 0
    assert f"the role {superuser} may do more than read and write rows" in refused.stderr
    assert password not in refused.stdout + refused.stderr
