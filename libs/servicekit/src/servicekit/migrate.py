"""A service's migration step, as the deployments run it (init containers, Compose, `make migrate`):

    python -m servicekit.migrate services/users/alembic.ini [-x name=value ...] [--sql]

`alembic upgrade heads`, with one difference: a database already at a revision of a later release
is left as it is and the step succeeds, so that the previous release starts on it (a rollback,
or old pods beside new ones during a rollout); servicekit.migrations says how it tells that
schema from one of another lineage, which fails the step. `-x` takes what `alembic -x` does
(`database_url=...`, `lock_timeout=...`); the URL comes from the service's settings otherwise.
"""

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.util import CommandError

from servicekit.migrations import ACCEPT_NEWER_SCHEMA_ATTRIBUTE


def main(arguments: Sequence[str] | None = None) -> int:
    """Migrate the database of the service whose alembic.ini is given; the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m servicekit.migrate",
        description="Migrate a service's database to this release's head, leaving a newer "
        "schema that follows it as it is.",
    )
    parser.add_argument("config", type=Path, help="the service's alembic.ini")
    parser.add_argument(
        "-x", action="append", default=[], help="an option of env.py, as alembic's -x"
    )
    parser.add_argument("--sql", action="store_true", help="print the SQL rather than run it")
    options = parser.parse_args(arguments)
    config = Config(str(options.config), cmd_opts=argparse.Namespace(x=options.x))
    config.attributes[ACCEPT_NEWER_SCHEMA_ATTRIBUTE] = True
    try:
        command.upgrade(config, "heads", sql=options.sql)
    except CommandError as error:
        print(f"FAILED: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
