"""SQL for posts, comments and tags: every query the service runs lives here.

Reads are Core SELECTs on the database's read path and return rows as dicts; writes use the
request's session.
"""

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum, auto
from typing import Any

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Integer,
    Select,
    String,
    and_,
    bindparam,
    delete,
    func,
    literal_column,
    or_,
    select,
    true,
)
from sqlalchemy.orm import selectinload

from blog_service.models import Author, Comment, Post, Tag, post_tags
from servicekit.database import Database, insert_with_conflicts
from servicekit.domain import found
from servicekit.keyset import Page, SortOrder, fetch_page
from servicekit.pagination import PageRequest
from servicekit.reads import LIKE_ESCAPE, Criteria, Row, escape_like, one_of
from servicekit.repository import Reads, Repository, ResourceReads

POSTS = Post.__table__
COMMENTS = Comment.__table__
TAGS = Tag.__table__
_POST_BY_ID = select(*POSTS.c).where(POSTS.c.id == bindparam("post_id"))
_POST_EXISTS = select(POSTS.c.id).where(POSTS.c.id == bindparam("post_id"))
_COMMENT_BY_ID = select(*COMMENTS.c).where(COMMENTS.c.id == bindparam("comment_id"))
_COMMENTS_OF_POST = select(*COMMENTS.c).where(COMMENTS.c.post_id == bindparam("post_id"))
_TAGS_OF_POSTS = (
    select(post_tags.c.post_id, TAGS.c.name)
    .select_from(post_tags.join(TAGS, TAGS.c.id == post_tags.c.tag_id))
    .where(one_of(post_tags.c.post_id, "post_ids"))
    .order_by(post_tags.c.post_id, TAGS.c.name)
)


# A tag on at most this many posts is rare, and on at most TAG_SET_POSTS is read as a set: see
# PostFilter.reading. Each is about where, on the bench's data, the next way began to cost less
# (docs/performance.md, "Blog's post lists").
RARE_TAG_POSTS = 2_000
TAG_SET_POSTS = 20_000


class TagReading(Enum):
    """How a list filtered by a tag finds the tag's posts: see PostFilter.reading."""

    LINKS = auto()
    SORTED_APART = auto()
    AGAINST_SET = auto()
    ONE_BY_ONE = auto()


def _by_creation(order: SortOrder) -> bool:
    return [column.key for column in order.columns] == ["created_at", "id"]


@dataclass(frozen=True)
class PostFilter:
    """Which posts a list shows; every criterion given must hold."""

    author_ids: Sequence[int] = ()
    tag: str | None = None
    published: bool | None = None
    text: str | None = None

    def needs_stored_tag(self, order: SortOrder | None) -> bool:
        """Whether reading this filter's posts in `order` (None: a batch per author) depends on
        how common its tag is, so that the tag must be looked up first."""
        if self.tag is None:
            return False
        return order is None or not _by_creation(order) or bool(self.author_ids)

    def reading(self, order: SortOrder | None, tag: Row | None = None) -> TagReading | None:
        """How the posts of this filter's tag are read for a page in `order`, or (None) for a
        batch per author; `tag` is the tag as stored (id and post_count) when
        needs_stored_tag says so.

        A prepared statement's plan takes any tag for an average one, and tags range from a
        handful of posts to a large share of them: the tag's stored count chooses the statement
        instead, and each statement holds Postgres to its plan.

        | list                          | the tag's posts   | reading      | statement |
        |-------------------------------|-------------------|--------------|-----------|
        | a page by creation, no author | any number        | LINKS        | _TAGGED   |
        | a page by creation, authors   | <= RARE_TAG_POSTS | LINKS        | _TAGGED   |
        | a page in another order       | <= RARE_TAG_POSTS | SORTED_APART | _RARE_TAG |
        | any other page, or a batch    | <= TAG_SET_POSTS  | AGAINST_SET  | _TAG_SET  |
        | any other page, or a batch    | more              | ONE_BY_ONE   | _LISTS    |

        LINKS: the tag's links, joined to their posts, come from their index in order of
        creation: a page reads a page's worth of them, however common the tag. Where authors
        are named and the tag is not rare, the authors' posts are fewer than the tag's links,
        and those are read instead.
        SORTED_APART: reading posts in another order until enough have a rare tag reads many
        posts, the whole table if another filter passes few of them; the rare tag's own posts
        cost at most its size to read and sort, whatever the other filters.
        AGAINST_SET: for a tag less rare, most posts read in order still lack it; its posts'
        ids are read once, as a set, and each post read is tested against it (a batch's walk
        then reads only the authors' index: _newest_by_author's `narrow`).
        ONE_BY_ONE: a common tag turns up soon in any order; a look-up of each post's link
        costs less than reading the set.
        """
        if self.tag is None:
            return None
        if not self.needs_stored_tag(order):
            return TagReading.LINKS
        if tag is None:
            raise ValueError("this reading depends on the tag as stored: look it up first")
        if order is not None and tag["post_count"] <= RARE_TAG_POSTS:
            return TagReading.LINKS if _by_creation(order) else TagReading.SORTED_APART
        if tag["post_count"] <= TAG_SET_POSTS:
            return TagReading.AGAINST_SET
        return TagReading.ONE_BY_ONE

    def page_of_posts(
        self, order: SortOrder, tag: Row | None = None
    ) -> tuple[Select[Any], dict[str, Any], SortOrder]:
        """The statement for pages of the posts passing this filter in `order`, its
        parameters, and the order as that statement spells it; `tag` as `reading` takes it."""
        reading = self.reading(order, tag)
        if reading is TagReading.LINKS:
            statement, parameters = _TAGGED.select(**self._values())
            # Sorted on the links' copy of the key, which their index holds; same cursor.
            by_links = order.spelled_in(post_tags.c.created_at, post_tags.c.post_id)
            return statement, {**parameters, "tag": self.tag}, by_links
        if reading is TagReading.SORTED_APART:
            assert tag is not None
            posts, parameters = _RARE_TAG.select(**self._values())
            by_copy = order.spelled_in(*(posts.selected_columns[c.key] for c in order.columns))
            return posts, {**parameters, "tag_id": tag["id"]}, by_copy
        return *self._tested_posts(reading, tag), order

    def newest_by_author(
        self, lateral: bool, tag: Row | None = None
    ) -> tuple[Select[Any], dict[str, Any]]:
        """The statement for the newest posts of each author passing this filter (see
        _newest_by_author), and its parameters; `tag` as `reading` takes it."""
        reading = self.reading(None, tag)
        posts, parameters = self._tested_posts(reading, tag)
        narrow = reading is TagReading.AGAINST_SET
        return _newest_by_author(posts, lateral, narrow), parameters

    def _tested_posts(
        self, reading: TagReading | None, tag: Row | None
    ) -> tuple[Select[Any], dict[str, Any]]:
        """Posts read in the list's order, each tested for the tag, if any, as it is read."""
        tested = _TAG_SET if reading is TagReading.AGAINST_SET else _LISTS
        return tested.select(tag_id=None if tag is None else tag["id"], **self._values())

    def _values(self) -> dict[str, Any]:
        authors = len(set(self.author_ids))
        return {
            # One author is an equality, which the index on (author_id, created_at, id) yields
            # in order of creation; a list of them is read in full and sorted.
            "author_id": self.author_ids[0] if authors == 1 else None,
            "author_ids": list(self.author_ids) if authors > 1 else None,
            "published": self.published,
            "text": None if self.text is None else escape_like(self.text),
        }


# The lists' optional filters, each a statement compiled once (see servicekit.reads).
_TEXT = bindparam("text", type_=String)


def _filters(posts: Any) -> dict[str, ColumnElement[bool]]:
    """The filters other than the tag, on `posts`' columns (the table's, or a copy's)."""
    return {
        "author_id": posts.author_id == bindparam("author_id"),
        "author_ids": one_of(posts.author_id, "author_ids"),
        "published": posts.published == bindparam("published"),
        "text": or_(
            posts.title.icontains(_TEXT, escape=LIKE_ESCAPE),
            posts.content.icontains(_TEXT, escape=LIKE_ESCAPE),
        ),
    }


_FILTERS = _filters(POSTS.c)

# ONE_BY_ONE, and lists without a tag. OFFSET 0 keeps the tag's test a look-up per post read:
# unfenced, Postgres makes it a join that reads and sorts every post of the tag, or a hashed
# set of them, either of which costs a common tag more than the look-ups of a page.
_HAS_TAG = (
    select(post_tags.c.post_id)
    .where(post_tags.c.post_id == POSTS.c.id, post_tags.c.tag_id == bindparam("tag_id"))
    .offset(literal_column("0", Integer))
    .exists()
)
_LISTS = Criteria(select(*POSTS.c), tag_id=_HAS_TAG, **_FILTERS)

_TAG = bindparam("tag", type_=String)
_TAG_BY_NAME = select(TAGS.c.id, TAGS.c.post_count).where(TAGS.c.name == _TAG)

# LINKS: each link carries its post's created_at (models.post_tags), which their index orders.
_TAGGED = Criteria(
    select(*POSTS.c)
    .select_from(post_tags.join(POSTS, POSTS.c.id == post_tags.c.post_id))
    .where(post_tags.c.tag_id == select(TAGS.c.id).where(TAGS.c.name == _TAG).scalar_subquery()),
    **_FILTERS,
)

# SORTED_APART: the tag's posts, read before any other filter or order applies. MATERIALIZED,
# with the filters outside it, keeps the planner, which cannot know that the tag is rare nor
# how many posts the authors named have, from walking an index of the sort key and testing
# each post, or from reading every post of the authors.
_TAG_POSTS = (
    select(*POSTS.c)
    .select_from(post_tags.join(POSTS, POSTS.c.id == post_tags.c.post_id))
    .where(post_tags.c.tag_id == bindparam("tag_id"))
    .cte("tag_posts")
    .prefix_with("MATERIALIZED")
)
_RARE_TAG = Criteria(select(*_TAG_POSTS.c), **_filters(_TAG_POSTS.c))

# AGAINST_SET. `IS true` keeps the IN a filter, which Postgres evaluates as one hashed set for
# the whole statement; as a join (what a bare IN becomes) it would be built again for each
# author of a batch.
_IN_TAG_SET = POSTS.c.id.in_(
    select(post_tags.c.post_id).where(post_tags.c.tag_id == bindparam("tag_id"))
).is_(true())
_TAG_SET = Criteria(select(*POSTS.c), tag_id=_IN_TAG_SET, **_FILTERS)

_NEWEST_FIRST = (POSTS.c.created_at.desc(), POSTS.c.id.desc())


@functools.cache
def _newest_by_author(shape: Select[Any], lateral: bool, narrow: bool = False) -> Select[Any]:
    """The first `per_author` posts of `shape` of each author, by author then newest first.

    `lateral` (Postgres) reads each author's newest posts from the index on (author_id,
    created_at, id), a few rows per author however many posts they wrote, and their tags by
    name in the same statement. `narrow` reads only that index while walking, and the posts
    found by their ids: for a filter that the index's columns decide (AGAINST_SET) and that
    may pass few of them. Otherwise (SQLite has no LATERAL and no arrays) every post of the
    authors is ranked and all but the first are dropped, and the tags are a second query.
    """
    if not lateral:
        rank = func.row_number().over(partition_by=POSTS.c.author_id, order_by=_NEWEST_FIRST)
        ranked = shape.add_columns(rank.label("rank")).subquery("ranked")
        return (
            select(*(ranked.c[column.name] for column in POSTS.c))
            .where(ranked.c.rank <= bindparam("per_author"))
            .order_by(ranked.c.author_id, ranked.c.created_at.desc(), ranked.c.id.desc())
        )
    authors = (
        select(func.unnest(bindparam("author_ids", type_=ARRAY(Integer))).label("author_id"))
        .distinct()
        .subquery("authors")
    )
    walk = shape.with_only_columns(POSTS.c.id) if narrow else shape
    newest = (
        walk.where(POSTS.c.author_id == authors.c.author_id)
        .order_by(*_NEWEST_FIRST)
        .limit(bindparam("per_author"))
        .lateral("newest")
    )
    each_authors = select(authors.c.author_id).select_from(authors).join(newest, true())
    if narrow:
        post = POSTS.alias("post")
        each_authors = each_authors.join(post, post.c.id == newest.c.id)
        posts = post.c
    else:
        posts = newest.c
    return each_authors.with_only_columns(
        *(posts[column.name] for column in POSTS.c), _tag_names(posts.id).label("tags")
    ).order_by(posts.author_id, posts.created_at.desc(), posts.id.desc())


def _tag_names(post_id: ColumnElement[int]) -> ColumnElement[list[str]]:
    """The names of a post's tags in order, as an array (Postgres), in the post's own row.

    Looked up for each post read, in the links' primary key, which costs less than joining
    the links in and grouping them.
    """
    links = post_tags.alias("post_links")
    names = (
        select(TAGS.c.name)
        .select_from(links.join(TAGS, TAGS.c.id == links.c.tag_id))
        .where(links.c.post_id == post_id)
        .order_by(TAGS.c.name)
        # The statement around it may read links and tags of its own (a tag's links, say).
        .correlate_except(links, TAGS)
        .scalar_subquery()
    )
    return func.array(names, type_=ARRAY(String))


@functools.cache
def _carrying_tag_names(statement: Select[Any]) -> Select[Any]:
    """`statement` with each post's tag names as one more column, `tags` (Postgres).

    Postgres looks them up for each row it returns, after sorting and LIMIT, but also for each
    row an OFFSET skips: a page at an offset reads its tags in a statement of their own.
    """
    return statement.add_columns(_tag_names(statement.selected_columns.id).label("tags"))


_POST_WITH_TAGS_BY_ID = _carrying_tag_names(_POST_BY_ID)


class PostReads(ResourceReads):
    """Queries that only read posts: rows as dicts, each post with its `tags` by name."""

    noun = "post"

    def __init__(self, database: Database) -> None:
        super().__init__(database)
        # Postgres has LATERAL and arrays: a batch walks each author's index, and a post's tags
        # come in its row (_tag_names). SQLite ranks a batch, and reads tags in one more query.
        self._postgres = database.engine.dialect.name == "postgresql"

    async def get(self, post_id: int) -> Row | None:
        if self._postgres:
            return await self.database.fetch_one(_POST_WITH_TAGS_BY_ID, {"post_id": post_id})
        post = await self.database.fetch_one(_POST_BY_ID, {"post_id": post_id})
        return (await self._with_tags([post]))[0] if post is not None else None

    async def author_ids(self) -> list[int]:
        """Every author of a post or a comment, in order."""
        authors = select(POSTS.c.author_id).union(select(COMMENTS.c.author_id)).subquery()
        rows = await self.database.fetch(select(authors.c.author_id).order_by(authors.c.author_id))
        return [row["author_id"] for row in rows]

    async def page(self, page: PageRequest, order: SortOrder, post_filter: PostFilter) -> Page[Row]:
        """One page of posts passing the filter, in `order`."""
        tag = None
        if post_filter.needs_stored_tag(order):
            assert post_filter.tag is not None
            tag = await self._tag(post_filter.tag)
            if tag is None:
                if page.after is not None:
                    order.values_of(page.after)  # InvalidInput for another order's cursor
                return Page([], None)
        statement, parameters, order = post_filter.page_of_posts(order, tag)
        tags_in_rows = self._postgres and page.skip == 0  # see _carrying_tag_names
        shape = _carrying_tag_names(statement) if tags_in_rows else statement
        result = await fetch_page(self.database, shape, order, page, parameters)
        posts = result.items if tags_in_rows else await self._with_tags(result.items)
        return Page(posts, result.next_cursor)

    async def newest_by_author(self, per_author: int, post_filter: PostFilter) -> list[Row]:
        """The newest `per_author` posts of each author that pass the filter.

        Ordered by author, then newest first: one query for every author's posts at once,
        with their tags on Postgres (one more for the tags on SQLite), after the lookup of the
        filter's tag if there is one.
        """
        tag = None
        if post_filter.tag is not None:
            tag = await self._tag(post_filter.tag)
            if tag is None:
                return []
        lateral = self._postgres
        statement, parameters = post_filter.newest_by_author(lateral, tag)
        parameters["per_author"] = per_author
        if lateral:
            # The lateral read goes through the authors' ids whatever the filter names.
            parameters["author_ids"] = list(post_filter.author_ids)
        rows = await self.database.fetch(statement, parameters)
        return rows if lateral else await self._with_tags(rows)

    async def _tag(self, name: str) -> Row | None:
        """The tag's id and its number of posts, or None if no post has it.

        A stored tag on no post (its count is kept in the writes' transactions) lists nothing,
        as one that does not exist, so neither reads any post.
        """
        tag = await self.database.fetch_one(_TAG_BY_NAME, {"tag": name})
        return tag if tag is not None and tag["post_count"] > 0 else None

    async def _with_tags(self, posts: list[Row]) -> list[Row]:
        """The posts, each with the names of its tags in order: one query for all of them."""
        links = await self.database.fetch_grouped(
            _TAGS_OF_POSTS, "post_ids", (post["id"] for post in posts), by="post_id"
        )
        for post in posts:
            post["tags"] = [link["name"] for link in links[post["id"]]]
        return posts


class CommentReads(ResourceReads):
    """Queries that only read comments."""

    noun = "comment"

    async def get(self, comment_id: int) -> Row | None:
        return await self.database.fetch_one(_COMMENT_BY_ID, {"comment_id": comment_id})

    async def of_post(self, post_id: int, page: PageRequest, order: SortOrder) -> Page[Row]:
        """One page of a post's comments in `order`; NotFound if there is no such post."""
        parameters = {"post_id": post_id}
        found(await self.database.fetch_one(_POST_EXISTS, parameters), "post", post_id)
        return await fetch_page(self.database, _COMMENTS_OF_POST, order, page, parameters)


class AuthorRepository(Repository[Author]):
    """Authors' rows: whether each was deleted, locked by every write in their name."""

    model = Author
    noun = "user"  # an author is a user of the users service

    async def lock_for_writing(self, author_id: int) -> bool:
        """Lock the author's row against deletion until the transaction ends (creating the row
        at their first write); whether the author may still write (not deleted).

        A create takes this shared lock before anything else, and the deletion takes the row
        exclusively: a deletion waits for the creates under way to commit, then erases what they
        wrote; a create that comes after waits for the deletion, then finds the author deleted.
        Postgres re-reads a row it waited for, so the deletion is seen as soon as it commits.
        SQLite has one writer at a time, which orders them the same way.
        """
        deleted_at = select(Author.deleted_at).where(Author.id == author_id)
        locking = deleted_at.with_for_update(read=True)
        row = (await self.session.execute(locking)).one_or_none()
        if row is None:
            await self.session.execute(
                insert_with_conflicts(self.session, Author)
                .values(id=author_id)
                .on_conflict_do_nothing(index_elements=["id"])
            )
            row = (await self.session.execute(locking)).one()
        return row.deleted_at is None

    async def mark_deleted(self, author_ids: Sequence[int], when: datetime) -> None:
        """Record the authors as deleted (once: the first time stays), locking their rows."""
        insert = insert_with_conflicts(self.session, Author).values(
            [{"id": i, "deleted_at": when} for i in sorted(author_ids)]
        )
        await self.session.execute(
            insert.on_conflict_do_update(
                index_elements=["id"],
                set_={"deleted_at": func.coalesce(Author.deleted_at, insert.excluded.deleted_at)},
            )
        )


class PostRepository(Repository[Post]):
    model = Post
    noun = "post"

    async def get(self, post_id: int) -> Post | None:
        """The post with its tags, or None."""
        return await self.session.get(Post, post_id, options=[selectinload(Post.tags)])

    async def delete_by_authors(self, author_ids: Sequence[int]) -> None:
        """Delete every post by these authors, with their comments and tag links."""
        await self.session.execute(
            delete(Post).where(Post.author_id.in_(author_ids)),
            execution_options={"synchronize_session": False},
        )


class CommentRepository(Repository[Comment]):
    model = Comment
    noun = "comment"

    async def with_post_author(self, comment_id: int) -> tuple[Comment, int]:
        """The comment and the author of its post; NotFound if there is no such comment."""
        statement = (
            select(Comment, Post.author_id)
            .join(Post, Post.id == Comment.post_id)
            .where(Comment.id == comment_id)
        )
        row = found((await self.session.execute(statement)).one_or_none(), self.noun, comment_id)
        return row[0], row[1]

    async def delete_by_authors(self, author_ids: Sequence[int]) -> None:
        """Delete every comment these authors wrote, and every comment on their posts.

        All of them in one statement, once they are locked in id order. Deleting the posts
        would otherwise take the comments on them in an order of its own, and two authors
        deleted at once who commented on each other's posts could each hold a comment that
        the other's deletion waits for.
        """
        going = or_(
            Comment.author_id.in_(author_ids),
            Comment.post_id.in_(select(Post.id).where(Post.author_id.in_(author_ids))),
        )
        if self.session.get_bind().dialect.name == "postgresql":
            locking = select(Comment.id).where(going).order_by(Comment.id).with_for_update()
            await self.session.execute(locking)
        await self.session.execute(
            delete(Comment).where(going), execution_options={"synchronize_session": False}
        )


class TagsByUse(SortOrder):
    """Most used tags first, then by name: directions differ, so the keyset is spelled out."""

    def order_by(self) -> list[Any]:
        return [Tag.post_count.desc(), Tag.name.asc()]

    def after(self) -> Any:
        post_count, name = bindparam("after_0", type_=Integer), bindparam("after_1", type_=String)
        return or_(Tag.post_count < post_count, and_(Tag.post_count == post_count, Tag.name > name))


BY_USE = TagsByUse("use", (Tag.post_count, Tag.name))
_TAGS = select(TAGS.c.id, TAGS.c.name, TAGS.c.post_count)


class TagReads(Reads):
    """Queries that only read tags."""

    async def page(self, page: PageRequest) -> Page[Row]:
        """One page of tags with the number of posts using each, most used first."""
        return await fetch_page(self.database, _TAGS, BY_USE, page)


class TagRepository(Repository[Tag]):
    model = Tag
    noun = "tag"

    async def lock(self, tag_ids: Iterable[int]) -> None:
        """Lock these tags' rows, in id order, before links to them are added or removed.

        Triggers on post_tags update the count on each tag a statement links or unlinks (see
        the migration that stores post_count). Writers whose posts share tags would otherwise
        take those rows in whatever order their statements touch them, and two could each hold
        one the other needs; in id order they queue. Every write takes its tags first, before
        any post or comment row, so no cycle runs through those either. FOR NO KEY UPDATE does
        not block the foreign key checks of other writers linking the same tags. SQLite has
        one writer at a time and no row locks: there it does nothing.
        """
        if ids := sorted(set(tag_ids)):
            await self._lock(Tag.id.in_(ids))

    async def lock_used_by_authors(self, author_ids: Sequence[int]) -> None:
        """Lock, in id order, every tag on a post by these authors (see `lock`)."""
        used = (
            select(post_tags.c.tag_id)
            .join(POSTS, POSTS.c.id == post_tags.c.post_id)
            .where(POSTS.c.author_id.in_(author_ids))
        )
        await self._lock(Tag.id.in_(used))

    async def _lock(self, which: ColumnElement[bool]) -> None:
        if self.session.get_bind().dialect.name == "postgresql":
            locking = select(Tag.id).where(which).order_by(Tag.id).with_for_update(key_share=True)
            await self.session.execute(locking)

    async def get_or_create(self, names: Sequence[str]) -> list[Tag]:
        """The tags with these (normalised) names, creating the missing ones.

        Concurrent requests may create the same new tag: each inserts with ON CONFLICT DO
        NOTHING, in name order so two writers never wait on each other crosswise, then reads
        the row whichever of them inserted.
        """
        if not names:
            return []
        by_name = {tag.name: tag for tag in await self._named(names)}
        missing = sorted(set(names) - by_name.keys())
        if missing:
            await self.session.execute(
                insert_with_conflicts(self.session, Tag)
                .values([{"name": name} for name in missing])
                .on_conflict_do_nothing(index_elements=[Tag.name])
            )
            by_name |= {tag.name: tag for tag in await self._named(missing)}
        return sorted(by_name.values(), key=lambda tag: tag.name)

    async def _named(self, names: Sequence[str]) -> Sequence[Tag]:
        return (await self.session.scalars(select(Tag).where(Tag.name.in_(names)))).all()
