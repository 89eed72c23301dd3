"""A realistic data set: users, their posts with tags and comments, and a catalog of products.

Users and blog have no bulk HTTP endpoint, so their rows go in through SQLAlchemy's batched
executemany on the services' own table definitions (the path `POST /products/bulk` takes
inside catalog); products go in through catalog's `POST /products/bulk` itself, 1,000 a request.
Row ids are given explicitly (and the sequences moved past them) so that every run builds the
same data set from the same seed.
"""

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import ColumnElement, Connection, Engine, Table, func, select, text
from sqlalchemy.exc import DBAPIError

from blog_service.models import Comment, Post, Tag, post_tags
from catalog_service.models import Product
from users_service.models import User

BATCH = 10_000
BULK_REQUEST_SIZE = 1000
CATEGORY_COUNT = 50
TAG_WORDS = [
    "python",
    "postgres",
    "sql",
    "fastapi",
    "asyncio",
    "httpx",
    "testing",
    "docker",
    "kubernetes",
    "linux",
    "performance",
    "security",
    "design",
    "api",
    "databases",
    "caching",
    "queues",
    "observability",
    "logging",
    "migrations",
    "pydantic",
    "typing",
    "rust",
    "go",
    "javascript",
    "css",
    "html",
    "react",
    "frontend",
    "backend",
    "devops",
    "cloud",
    "networking",
    "algorithms",
    "data",
    "science",
    "statistics",
    "machine-learning",
    "ai",
    "privacy",
    "open-source",
    "career",
    "management",
    "teams",
    "writing",
    "books",
    "travel",
    "food",
    "music",
    "photography",
    "running",
    "cycling",
    "climbing",
]
WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "it",
    "for",
    "on",
    "with",
    "as",
    "at",
    "by",
    "from",
    "this",
    "that",
    "an",
    "be",
    "are",
    "was",
    "were",
    "we",
    "you",
    "they",
    "system",
    "service",
    "request",
    "database",
    "query",
    "index",
    "page",
    "cursor",
    "batch",
    "latency",
    "throughput",
    "pool",
    "connection",
    "session",
    "transaction",
    "commit",
    "rollback",
    "schema",
    "migration",
    "table",
    "column",
    "row",
    "key",
    "value",
    "cache",
    "queue",
    "worker",
    "event",
    "stream",
    "client",
    "server",
    "gateway",
    "network",
    "timeout",
    "retry",
    "error",
]
FIRST_NAMES = [
    "Ada",
    "Alan",
    "Barbara",
    "Dennis",
    "Edsger",
    "Frances",
    "Grace",
    "Guido",
    "Hedy",
    "Ken",
    "Linus",
    "Margaret",
]
LAST_NAMES = [
    "Lovelace",
    "Turing",
    "Liskov",
    "Ritchie",
    "Dijkstra",
    "Allen",
    "Hopper",
    "Rossum",
    "Lamarr",
    "Thompson",
]
EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
SPAN = timedelta(days=700)


@dataclass(frozen=True)
class Scale:
    """How much data to seed."""

    users: int = 100_000
    posts: int = 500_000
    products: int = 100_000
    comments: int = 100_000
    tags: int = 200

    def scaled(self, factor: float) -> "Scale":
        """The same proportions, `factor` times as many rows (at least a few of each)."""
        return Scale(
            users=max(100, int(self.users * factor)),
            posts=max(500, int(self.posts * factor)),
            products=max(BULK_REQUEST_SIZE, int(self.products * factor)),
            comments=max(100, int(self.comments * factor)),
            tags=self.tags,
        )


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description:<10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )


def _moment(rng: random.Random, index: int, count: int) -> datetime:
    # Rows get older with their id, with some jitter: the usual shape of an append-mostly table.
    position = (index + rng.random()) / count
    return EPOCH + SPAN * position


def _sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choices(WORDS, k=words))


def _insert_batches(
    engine: Engine,
    table: Table,
    rows: Iterator[dict[str, Any]],
    total: int | None,
    progress: Progress,
    label: str,
    *,
    one_statement_per_batch: bool = False,
) -> None:
    """Insert `rows` in batches of BATCH, in one transaction.

    A batch is an executemany, one statement per row, unless `one_statement_per_batch`: then
    it is a single multi-row INSERT, for tables whose statement triggers should see a batch
    at once (each batch's parameters must stay under Postgres's 65,535).
    """
    task = progress.add_task(label, total=total)

    def insert(connection: Connection, batch: list[dict[str, Any]]) -> None:
        if one_statement_per_batch:
            connection.execute(table.insert().values(batch))
        else:
            connection.execute(table.insert(), batch)
        progress.advance(task, len(batch))

    batch: list[dict[str, Any]] = []
    with engine.begin() as connection:
        for row in rows:
            batch.append(row)
            if len(batch) == BATCH:
                insert(connection, batch)
                batch = []
        if batch:
            insert(connection, batch)


def _move_sequence_past(engine: Engine, table: Table) -> None:
    with engine.begin() as connection:
        connection.execute(
            text(
                f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "  # noqa: S608 - table names are ours
                f"(SELECT coalesce(max(id), 1) FROM {table.name}))"
            )
        )


def row_count(engine: Engine, table: Table, *where: ColumnElement[bool]) -> int:
    """How many rows `table` holds (that match `where`)."""
    with engine.connect() as connection:
        statement = select(func.count()).select_from(table).where(*where)
        return int(connection.execute(statement).scalar_one())


def seed_users(engine: Engine, scale: Scale, progress: Progress) -> None:
    """`scale.users` users with unique emails; one in ten inactive."""
    rng = random.Random(1)  # noqa: S311 - test data, not secrets

    def rows() -> Iterator[dict[str, Any]]:
        for index in range(scale.users):
            moment = _moment(rng, index, scale.users)
            yield {
                "id": index + 1,
                "email": f"user{index + 1:07d}@example.com",
                "name": f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}",
                "is_active": rng.random() > 0.1,
                "created_at": moment,
                "updated_at": moment,
                "version": 1,
            }

    table = User.__table__
    assert isinstance(table, Table)
    _insert_batches(engine, table, rows(), scale.users, progress, "users")
    _move_sequence_past(engine, table)


def seed_blog(engine: Engine, scale: Scale, progress: Progress) -> None:
    """Posts spread unevenly over the users (a few prolific authors), with tags and comments."""
    rng = random.Random(2)  # noqa: S311 - test data, not secrets
    tag_names = [
        word if index < len(TAG_WORDS) else f"{word}-{index // len(TAG_WORDS)}"
        for index, word in enumerate(TAG_WORDS[i % len(TAG_WORDS)] for i in range(scale.tags))
    ]
    tag_table, post_table, comment_table = (
        Tag.__table__,
        Post.__table__,
        Comment.__table__,
    )
    assert isinstance(tag_table, Table)
    assert isinstance(post_table, Table)
    assert isinstance(comment_table, Table)
    with engine.begin() as connection:
        connection.execute(
            tag_table.insert(), [{"id": i + 1, "name": n} for i, n in enumerate(tag_names)]
        )
    _move_sequence_past(engine, tag_table)

    def author() -> int:
        # Squaring a uniform number skews towards low ids: some users write far more than others.
        return 1 + int(scale.users * rng.random() ** 2)

    def posts() -> Iterator[dict[str, Any]]:
        for index in range(scale.posts):
            moment = _moment(rng, index, scale.posts)
            yield {
                "id": index + 1,
                "title": _sentence(rng, rng.randint(3, 9)).capitalize(),
                "content": _sentence(rng, rng.randint(30, 120)),
                "author_id": author(),
                "published": rng.random() > 0.2,
                "created_at": moment,
                "updated_at": moment,
                "version": 1,
            }

    def links() -> Iterator[dict[str, Any]]:
        weights = [1 / (rank + 1) for rank in range(len(tag_names))]  # a few popular tags
        for post_id in range(1, scale.posts + 1):
            chosen = set(rng.choices(range(1, len(tag_names) + 1), weights, k=rng.randint(0, 3)))
            for tag_id in sorted(chosen):
                yield {"post_id": post_id, "tag_id": tag_id}

    def comments() -> Iterator[dict[str, Any]]:
        for index in range(scale.comments):
            post_id = rng.randint(1, scale.posts)
            yield {
                "id": index + 1,
                "post_id": post_id,
                "author_id": author(),
                "content": _sentence(rng, rng.randint(5, 40)),
                "created_at": _moment(rng, post_id - 1, scale.posts) + timedelta(hours=1),
            }

    _insert_batches(engine, post_table, posts(), scale.posts, progress, "posts")
    _move_sequence_past(engine, post_table)
    # The links' triggers count each tag's posts once per statement: linking row by row in one
    # transaction would update the same tag rows hundreds of thousands of times.
    _insert_batches(
        engine, post_tags, links(), None, progress, "post tags", one_statement_per_batch=True
    )
    _insert_batches(engine, comment_table, comments(), scale.comments, progress, "comments")
    _move_sequence_past(engine, comment_table)


def product_bodies(
    rng: random.Random, category_ids: Sequence[int], count: int, label: str
) -> list[dict[str, Any]]:
    """`count` product bodies as `POST /products/bulk` takes them."""
    return [
        {
            "name": f"{label} {rng.choice(WORDS)} {rng.choice(WORDS)} {index}",
            "description": _sentence(rng, rng.randint(5, 30)),
            "price": str(Decimal(rng.randint(100, 99_999)) / 100),
            "category_id": rng.choice(category_ids),
            "stock_quantity": rng.randint(0, 500),
            "is_active": rng.random() > 0.05,
        }
        for index in range(count)
    ]


def seed_catalog(catalog: httpx.Client, scale: Scale, progress: Progress) -> None:
    """Fifty categories, then `scale.products` products through `POST /products/bulk`."""
    rng = random.Random(3)  # noqa: S311 - test data, not secrets
    category_ids = []
    for index in range(CATEGORY_COUNT):
        answer = catalog.post("/categories/", json={"name": f"Category {index + 1:02d}"})
        answer.raise_for_status()
        category_ids.append(int(answer.json()["id"]))
    task = progress.add_task("products", total=scale.products)
    for start in range(0, scale.products, BULK_REQUEST_SIZE):
        size = min(BULK_REQUEST_SIZE, scale.products - start)
        answer = catalog.post(
            "/products/bulk", json=product_bodies(rng, category_ids, size, "Item")
        )
        answer.raise_for_status()
        progress.advance(task, size)


def is_seeded(users: Engine, blog: Engine, catalog: Engine, scale: Scale) -> bool:
    """Whether the databases hold exactly this data set (the bulk scenario cleans up)."""

    user_table, post_table, product_table = User.__table__, Post.__table__, Product.__table__
    assert isinstance(user_table, Table)
    assert isinstance(post_table, Table)
    assert isinstance(product_table, Table)
    try:
        return (
            # The bench's own accounts come after the seeded users.
            row_count(users, user_table, user_table.c.id <= scale.users) == scale.users
            and row_count(blog, post_table) == scale.posts
            and row_count(catalog, product_table) == scale.products
        )
    except DBAPIError:
        return False


def seed_users_and_blog(users: Engine, blog: Engine, scale: Scale) -> None:
    """Fill the freshly migrated users and blog databases, then refresh their statistics.

    Users get the ids 1 to `scale.users`; accounts made afterwards come after them.
    """
    with _progress() as progress:
        seed_users(users, scale, progress)
        seed_blog(blog, scale, progress)
    _analyze(users, blog)


def seed_catalog_through_api(catalog: Engine, catalog_api: httpx.Client, scale: Scale) -> None:
    """Fill the freshly migrated catalog through its API (an admin's client), then analyze."""
    with _progress() as progress:
        seed_catalog(catalog_api, scale, progress)
    _analyze(catalog)


def _analyze(*engines: Engine) -> None:
    for engine in engines:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE"))
