"""The rules of the blog service: who may write what, tags by name, optimistic locking,
not-found, erasing an author."""

from collections.abc import Sequence

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from blog_service.models import Comment, Post
from blog_service.repository import (
    AuthorRepository,
    CommentRepository,
    PostRepository,
    TagRepository,
)
from blog_service.schemas import CommentCreate, PostCreate, PostUpdate
from servicekit.auth import Principal
from servicekit.database import utcnow
from servicekit.domain import Forbidden, not_found
from servicekit.preconditions import IfMatch


async def _lock_author(authors: AuthorRepository, author_id: int) -> None:
    """Hold the author against deletion for the rest of the transaction; NotFound if deleted."""
    if not await authors.lock_for_writing(author_id):
        raise not_found("user", author_id)


def _author(caller: Principal, author_id: int | None) -> int:
    """Who a new post or comment is by: the caller, or the user an admin names."""
    if author_id is None:
        return caller.user_id
    if not caller.may_act_for(author_id):
        raise Forbidden("only an admin may write as another user")
    return author_id


def _check_may_change(caller: Principal, post: Post) -> None:
    if not caller.may_act_for(post.author_id):
        raise Forbidden(f"only the author of post {post.id} or an admin may change it")


class PostService:
    """Creating, changing and deleting posts."""

    def __init__(
        self,
        posts: PostRepository,
        tags: TagRepository,
        comments: CommentRepository,
        authors: AuthorRepository,
    ) -> None:
        self.posts = posts
        self.tags = tags
        self.comments = comments
        self.authors = authors

    async def create(self, data: PostCreate, caller: Principal) -> Post:
        """A post by the caller, or by the author an admin names; NotFound if that user was
        deleted."""
        author_id = _author(caller, data.author_id)
        await _lock_author(self.authors, author_id)  # first: see AuthorRepository
        tags = await self.tags.get_or_create(data.tags)
        await self.tags.lock(tag.id for tag in tags)
        fields = data.model_dump(exclude={"tags", "author_id"})
        return await self.posts.add(Post(**fields, author_id=author_id, tags=tags))

    async def update(
        self, post_id: int, data: PostUpdate, if_match: IfMatch, caller: Principal
    ) -> Post:
        """Change a post, as its author or an admin; its version is told to them alone."""
        post = await self.posts.require(post_id)
        _check_may_change(caller, post)
        if_match.check(post.version)
        changes = data.changes()
        tag_names: list[str] | None = changes.pop("tags", None)
        # Tags before the post's own row, as every write takes them (see TagRepository.lock):
        # changing fields first would let a flush lock the post before its tags.
        if tag_names is not None and set(tag_names) != {tag.name for tag in post.tags}:
            tags = await self.tags.get_or_create(tag_names)
            await self.tags.lock(tag.id for tag in [*post.tags, *tags])
            post.tags = tags
            # The post row itself may be unchanged; touching it bumps updated_at and version.
            post.updated_at = utcnow()
        for field, value in changes.items():
            setattr(post, field, value)
        await self.posts.flush()
        return post

    async def delete(self, post_id: int, if_match: IfMatch, caller: Principal) -> None:
        """Delete a post, as its author or an admin."""
        post = await self.posts.require(post_id)
        _check_may_change(caller, post)
        if_match.check(post.version)
        await self.tags.lock(tag.id for tag in post.tags)
        await self.posts.delete(post)

    async def delete_authored_by(self, author_ids: Sequence[int], caller: Principal) -> None:
        """Remove the authors' posts (with every comment on them) and their comments elsewhere.

        An admin may remove anyone's; any other user only their own, and nobody else's with it.
        """
        if not (caller.is_admin or set(author_ids) == {caller.user_id}):
            raise Forbidden("only an admin may delete what other users wrote")
        await self.erase(author_ids)

    async def erase(self, author_ids: Sequence[int]) -> None:
        """Delete the authors' posts (with every comment on them) and their other comments."""
        await self.tags.lock_used_by_authors(author_ids)
        await self.comments.delete_by_authors(author_ids)
        await self.posts.delete_by_authors(author_ids)

    async def erase_deleted_users(self, author_ids: Sequence[int]) -> None:
        """Apply the deletion of users: record them as deleted, so that nothing more is written
        in their name, and erase what they wrote.

        The authors' rows are taken first, as every create takes its author's first: creates
        under way finish before the erasure reads what to delete (see AuthorRepository).
        """
        await self.authors.mark_deleted(author_ids, utcnow())
        await self.erase(author_ids)


def post_service(session: AsyncSession) -> PostService:
    """A PostService writing in the session's transaction."""
    return PostService(
        PostRepository(session),
        TagRepository(session),
        CommentRepository(session),
        AuthorRepository(session),
    )


class CommentService:
    """Commenting, and deleting comments."""

    def __init__(self, comments: CommentRepository, authors: AuthorRepository) -> None:
        self.comments = comments
        self.authors = authors

    async def create(self, post_id: int, data: CommentCreate, caller: Principal) -> Comment:
        """A comment by the caller, or by the author an admin names; NotFound if that user
        was deleted, or the post does not exist."""
        author_id = _author(caller, data.author_id)
        await _lock_author(self.authors, author_id)
        comment = Comment(post_id=post_id, author_id=author_id, content=data.content)
        try:
            return await self.comments.add(comment)
        except IntegrityError as exc:
            # The only constraint a comment can break is its post's foreign key.
            raise not_found("post", post_id) from exc

    async def delete(self, comment_id: int, caller: Principal) -> None:
        """Delete a comment, as its author, the author of its post, or an admin."""
        comment, post_author_id = await self.comments.with_post_author(comment_id)
        if not (caller.may_act_for(comment.author_id) or caller.user_id == post_author_id):
            raise Forbidden(
                f"only the author of comment {comment_id}, the author of its post "
                "or an admin may delete it"
            )
        await self.comments.delete(comment)
