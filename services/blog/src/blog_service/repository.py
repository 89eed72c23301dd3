"""SQL for posts, comments and tags: every query the service runs lives here."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, and_, delete, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased, selectinload, undefer

from blog_service.models import Comment, Post, Tag
from servicekit.pagination import Page, PageRequest, SortOrder, paginate


@dataclass(frozen=True)
class PostFilter:
    """Which posts a list shows; every criterion given must hold."""

    author_ids: Sequence[int] = ()
    tag: str | None = None
    published: bool | None = None
    text: str | None = None

    def apply(self, statement: Select[Any]) -> Select[Any]:
        """`statement` narrowed to the posts that pass this filter."""
        if self.author_ids:
            statement = statement.where(Post.author_id.in_(self.author_ids))
        if self.tag is not None:
            statement = statement.where(Post.tags.any(Tag.name == self.tag))
        if self.published is not None:
            statement = statement.where(Post.published == self.published)
        if self.text is not None:
            statement = statement.where(
                or_(
                    Post.title.icontains(self.text, autoescape=True),
                    Post.content.icontains(self.text, autoescape=True),
                )
            )
        return statement


class PostRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, post_id: int) -> Post | None:
        """The post with its tags, or None."""
        return await self.session.get(Post, post_id, options=[selectinload(Post.tags)])

    async def exists(self, post_id: int) -> bool:
        return await self.session.scalar(select(Post.id).where(Post.id == post_id)) is not None

    async def page(
        self, page: PageRequest, order: SortOrder, post_filter: PostFilter
    ) -> Page[Post]:
        """One page of posts passing the filter, in `order`, each with its tags."""
        statement = post_filter.apply(select(Post)).options(selectinload(Post.tags))
        return await paginate(self.session, statement, order, page)

    async def newest_by_author(self, per_author: int, post_filter: PostFilter) -> list[Post]:
        """The newest `per_author` posts of each author that pass the filter, with their tags.

        Ordered by author, then newest first. One query ranks every author's posts at once and
        one more loads their tags: a batch may hold more posts than selectinload's default
        chunk of 500 ids, so the chunk is sized to hold the whole batch.
        """
        rank = (
            func.row_number()
            .over(partition_by=Post.author_id, order_by=(Post.created_at.desc(), Post.id.desc()))
            .label("rank")
        )
        ranked = post_filter.apply(select(Post, rank)).subquery("ranked")
        ranked_post = aliased(Post, ranked)
        largest_batch = max(1, len(post_filter.author_ids) * per_author)
        statement = (
            select(ranked_post)
            .where(ranked.c.rank <= per_author)
            .order_by(ranked_post.author_id, ranked_post.created_at.desc(), ranked_post.id.desc())
            .options(selectinload(ranked_post.tags, chunksize=largest_batch))
        )
        return list(await self.session.scalars(statement))

    async def add(self, post: Post) -> Post:
        self.session.add(post)
        await self.session.flush()
        return post

    async def flush(self) -> None:
        await self.session.flush()

    async def delete(self, post: Post) -> None:
        """Delete a post; the database removes its comments and tag links with it."""
        await self.session.delete(post)
        await self.session.flush()

    async def delete_by_authors(self, author_ids: Sequence[int]) -> None:
        """Delete every post by these authors, with their comments and tag links."""
        await self.session.execute(
            delete(Post).where(Post.author_id.in_(author_ids)),
            execution_options={"synchronize_session": False},
        )


class CommentRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, comment_id: int) -> Comment | None:
        return await self.session.get(Comment, comment_id)

    async def page(self, post_id: int, page: PageRequest, order: SortOrder) -> Page[Comment]:
        """One page of a post's comments in `order`."""
        statement = select(Comment).where(Comment.post_id == post_id)
        return await paginate(self.session, statement, order, page)

    async def add(self, comment: Comment) -> Comment:
        """Insert a comment now, so a post deleted meanwhile surfaces here rather than at commit."""
        self.session.add(comment)
        await self.session.flush()
        return comment

    async def delete(self, comment: Comment) -> None:
        await self.session.delete(comment)
        await self.session.flush()

    async def delete_by_authors(self, author_ids: Sequence[int]) -> None:
        """Delete every comment these authors wrote, on anyone's posts."""
        await self.session.execute(
            delete(Comment).where(Comment.author_id.in_(author_ids)),
            execution_options={"synchronize_session": False},
        )


class TagsByUse(SortOrder):
    """Most used tags first, then by name: directions differ, so the keyset is spelled out."""

    def order_by(self) -> list[Any]:
        return [Tag.post_count.desc(), Tag.name.asc()]

    def after(self, cursor: str) -> Any:
        post_count, name = self.values_of(cursor)
        return or_(Tag.post_count < post_count, and_(Tag.post_count == post_count, Tag.name > name))


BY_USE = TagsByUse("use", (Tag.post_count, Tag.name))


class TagRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def page(self, page: PageRequest) -> Page[Tag]:
        """One page of tags with the number of posts using each, most used first."""
        statement = select(Tag).options(undefer(Tag.post_count))
        return await paginate(self.session, statement, BY_USE, page)

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
                self._insert()
                .values([{"name": name} for name in missing])
                .on_conflict_do_nothing(index_elements=[Tag.name])
            )
            by_name |= {tag.name: tag for tag in await self._named(missing)}
        return sorted(by_name.values(), key=lambda tag: tag.name)

    async def _named(self, names: Sequence[str]) -> Sequence[Tag]:
        return (await self.session.scalars(select(Tag).where(Tag.name.in_(names)))).all()

    def _insert(self) -> postgresql.Insert | sqlite.Insert:
        if self.session.get_bind().dialect.name == "postgresql":
            return postgresql.insert(Tag)
        return sqlite.insert(Tag)
