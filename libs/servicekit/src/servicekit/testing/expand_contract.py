"""The expand/contract rule, checked on the SQL each revision's upgrade emits.

The previous release runs on the schema a new revision leaves, beside the new release during a
rollout and alone after a rollback, so an upgrade expands: it adds tables, nullable columns,
columns with a default, indexes. What the previous release's code would fail on is a contract
step: dropping or renaming a table or a column, adding a NOT NULL column without a default (its
inserts leave it out), making a column NOT NULL or dropping a column's default. Such a revision
ships a release after the code stopped using what it removes, and says so with a module-level
`contract`, naming that release:

    contract = "0.4.0 stopped reading users.nickname"

Each upgrade is rendered as Postgres SQL in Alembic's offline mode (`upgrade --sql`), which needs
no database and shows raw `op.execute` SQL too. What SQL cannot tell, such as a narrowed type or a
new CHECK the previous release's writes break, is left to review. SQLite is not checked: it is
the development database, where two releases never share a schema, and its table rebuilds drop
and rename by design.
"""

import io
import re
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import Script, ScriptDirectory

from servicekit.migrations import DATABASE_URL_ATTRIBUTE, parent_revisions

CONTRACT_ATTRIBUTE = "contract"
# Offline mode reads the dialect from the URL and never connects.
OFFLINE_URL = "postgresql+psycopg://offline@offline.invalid/offline"

_DROP_TABLE = re.compile(r"DROP\s+TABLE\b", re.IGNORECASE)
_ALTER_TABLE = re.compile(
    r"ALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?:ONLY\s+)?\S+\s+(?P<actions>.*)",
    re.IGNORECASE | re.DOTALL,
)
_COLUMN = r"(?:COLUMN\s+)?(?:IF\s+(?:NOT\s+)?EXISTS\s+)?\S+"
# Each action of an ALTER TABLE that the previous release's code may fail on.
_CONTRACT_ACTIONS = {
    "renames a table or a column": re.compile(r"RENAME\s+(?!CONSTRAINT\b)", re.IGNORECASE),
    "drops a column": re.compile(r"DROP\s+(?!CONSTRAINT\b)", re.IGNORECASE),
    "makes a column NOT NULL": re.compile(rf"ALTER\s+{_COLUMN}\s+SET\s+NOT\s+NULL", re.IGNORECASE),
    "drops a column's default": re.compile(rf"ALTER\s+{_COLUMN}\s+DROP\s+DEFAULT", re.IGNORECASE),
}
_ADD_COLUMN = re.compile(
    r"ADD\s+(?!CONSTRAINT\b|PRIMARY\b|UNIQUE\b|FOREIGN\b|CHECK\b|EXCLUDE\b)", re.IGNORECASE
)
# String literals, `$$` bodies (run when a function is called, not by the migration) and comments.
_OPAQUE = re.compile(r"'(?:[^']|'')*'|\$\$.*?\$\$|--[^\n]*", re.DOTALL)
_NOT_NULL = re.compile(r"\bNOT\s+NULL\b", re.IGNORECASE)
_FILLED = re.compile(r"\b(DEFAULT|GENERATED|SMALLSERIAL|SERIAL|BIGSERIAL)\b", re.IGNORECASE)


def _split_top_level(sql: str, separator: str) -> Iterator[str]:
    """`sql`, without quoted text, cut at each `separator` outside parentheses."""
    depth, start = 0, 0
    for index, character in enumerate(sql):
        depth += {"(": 1, ")": -1}.get(character, 0)
        if character == separator and depth == 0:
            yield sql[start:index].strip()
            start = index + 1
    yield sql[start:].strip()


def _action_change(action: str) -> str | None:
    for change, pattern in _CONTRACT_ACTIONS.items():
        if pattern.match(action):
            return change
    if _ADD_COLUMN.match(action) and _NOT_NULL.search(action) and not _FILLED.search(action):
        return "adds a NOT NULL column without a default"
    return None


def contract_changes(sql: str) -> list[str]:
    """What in `sql` (Postgres statements) the previous release's code may fail on."""
    changes = []
    bare = _OPAQUE.sub(lambda opaque: "" if opaque[0].startswith("--") else "'...'", sql)
    for statement in _split_top_level(bare, ";"):
        if _DROP_TABLE.match(statement):
            changes.append(f"drops a table: {statement}")
        altered = _ALTER_TABLE.match(statement)
        for action in _split_top_level(altered["actions"], ",") if altered else ():
            change = _action_change(action)
            if change:
                changes.append(f"{change}: {statement}")
    return changes


class _Statements(io.StringIO):
    """Offline output, one entry per write: Alembic writes each statement at once."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[str] = []

    def write(self, text: str) -> int:
        self.written.append(text)
        return len(text)


def upgrade_sql(alembic_ini: Path, script: Script) -> str:
    """The Postgres SQL of one revision's upgrade, from its parent's schema."""
    output = _Statements()
    config = Config(str(alembic_ini), output_buffer=output)
    config.attributes[DATABASE_URL_ATTRIBUTE] = OFFLINE_URL
    parents = parent_revisions(script)
    # Offline mode starts from one revision: a merge is rendered from its first parent, so it
    # is answerable for the other branches' changes as well.
    command.upgrade(
        config, f"{parents[0]}:{script.revision}" if parents else script.revision, sql=True
    )
    return "".join(output.written)


def unmarked_contract_steps(alembic_ini: Path) -> dict[str, list[str]]:
    """Each revision whose upgrade contracts the schema but does not say so, by its file's name:
    what it changes."""
    config = Config(str(alembic_ini))
    unmarked = {}
    for script in ScriptDirectory.from_config(config).walk_revisions():
        marked = getattr(script.module, CONTRACT_ATTRIBUTE, None)
        if isinstance(marked, str) and marked.strip():
            continue
        changes = contract_changes(upgrade_sql(alembic_ini, script))
        if changes:
            unmarked[Path(script.path).name] = changes
    return unmarked
