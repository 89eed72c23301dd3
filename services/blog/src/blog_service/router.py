"""HTTP endpoints of the blog service: posts, comments and tags."""

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response, status

from blog_service.models import Comment, Post
from blog_service.repository import (
    AuthorRepository,
    CommentReads,
    CommentRepository,
    PostFilter,
    PostReads,
    TagReads,
)
from blog_service.schemas import (
    CommentCreate,
    CommentRead,
    PostCreate,
    PostRead,
    PostSortField,
    PostUpdate,
    TagName,
    TagRead,
)
from blog_service.service import CommentService, PostService, post_service
from servicekit.auth import PUBLIC, SignedIn
from servicekit.database import SessionDep
from servicekit.domain import InvalidInput
from servicekit.errors import error_responses
from servicekit.idempotency import IDEMPOTENT, IdempotentRoute
from servicekit.keyset import SortOrder
from servicekit.pagination import MAX_LIMIT
from servicekit.preconditions import IfMatchDep, etag
from servicekit.reads import Row
from servicekit.routes import NOT_MODIFIED, IdPath, IfNoneMatch, PagingDep, created, versioned
from servicekit.schemas import Id, Text

posts_router = APIRouter(prefix="/posts", tags=["posts"], route_class=IdempotentRoute)
comments_router = APIRouter(prefix="/comments", tags=["comments"])
tags_router = APIRouter(prefix="/tags", tags=["tags"])

AuthorIds = Annotated[
    list[Id],
    Query(alias="author_id", max_length=MAX_LIMIT, description="Only posts by these authors."),
]
MAX_PER_AUTHOR = 50
OLDEST_FIRST = SortOrder("created_at:asc", (Comment.created_at, Comment.id))
# Query parameters that shape a page; a per-author batch is not a page.
_PAGE_PARAMETERS = ("skip", "limit", "after", "sort_by", "order")


async def _post_writer(session: SessionDep) -> PostService:
    return post_service(session)


async def _comment_writer(session: SessionDep) -> CommentService:
    return CommentService(CommentRepository(session), AuthorRepository(session))


Posts = Annotated[PostService, Depends(_post_writer)]
PostsReader = Annotated[PostReads, Depends(PostReads.of)]
FoundPost = Annotated[Row, Depends(PostReads.found_by("post_id"))]
Comments = Annotated[CommentService, Depends(_comment_writer)]
CommentsReader = Annotated[CommentReads, Depends(CommentReads.of)]
FoundComment = Annotated[Row, Depends(CommentReads.found_by("comment_id"))]
TagsReader = Annotated[TagReads, Depends(TagReads.of)]


@posts_router.post(
    "/",
    dependencies=[IDEMPOTENT],
    status_code=status.HTTP_201_CREATED,
    response_model=PostRead,
    responses=error_responses(400, 404),
)
async def create_post(
    caller: SignedIn, data: PostCreate, posts: Posts, request: Request, response: Response
) -> Post:
    """Create a post by the caller (or, by an admin, by the `author_id` named); 404 if that
    user was deleted. Its tags are created on first use."""
    post = await posts.create(data, caller)
    created(request, response, post.version, "get_post", post_id=post.id)
    return post


@posts_router.get("/", dependencies=[PUBLIC], response_model=list[PostRead])
async def list_posts(
    posts: PostsReader,
    paging: PagingDep,
    request: Request,
    author_ids: AuthorIds = [],  # noqa: B006 - FastAPI copies defaults
    tag: Annotated[TagName | None, Query(description="Only posts with this tag.")] = None,
    published: Annotated[bool | None, Query(description="Only (un)published posts.")] = None,
    q: Annotated[
        Annotated[str, Text(max_length=200)] | None,
        Query(description="Only posts whose title or content contains this, ignoring case."),
    ] = None,
    sort_by: PostSortField = "created_at",
    order: Literal["asc", "desc"] = "desc",
    per_author: Annotated[
        int | None,
        Query(
            ge=1,
            le=MAX_PER_AUTHOR,
            description="Instead of a page: the newest `per_author` posts of each `author_id`, "
            "ordered by author, then newest first (a batch read; no Link header).",
        ),
    ] = None,
) -> list[Row]:
    """Posts, newest first by default, a page at a time; `?author_id=1&author_id=2` is a batch."""
    post_filter = PostFilter(author_ids=author_ids, tag=tag, published=published, text=q)
    if per_author is None:
        sort_order = SortOrder.by(sort_by, order, getattr(Post, sort_by), Post.id)
        return paging.answer(await posts.page(paging.page, sort_order, post_filter))
    if not author_ids:
        raise InvalidInput.at(
            ("query", "per_author"),
            "per_author needs at least one author_id: it reads the newest posts of each one",
        )
    page_parameters = [name for name in _PAGE_PARAMETERS if name in request.query_params]
    if page_parameters:
        raise InvalidInput.at(
            ("query", "per_author"),
            "per_author reads a bounded batch ordered by author, then newest first, not a page: "
            f"it cannot be combined with {', '.join(page_parameters)}",
        )
    return await posts.newest_by_author(per_author, post_filter)


@posts_router.delete("/", status_code=status.HTTP_204_NO_CONTENT)
async def delete_posts_by_authors(
    caller: SignedIn,
    posts: Posts,
    author_ids: Annotated[
        list[Id],
        Query(
            alias="author_id",
            min_length=1,
            max_length=MAX_LIMIT,
            description="The users whose posts and comments to remove.",
        ),
    ],
) -> None:
    """Remove everything these users wrote: their posts with every comment on them, and their
    comments on other posts. Succeeds whether or not there was anything to remove. An admin may
    name anyone; another user only themselves."""
    await posts.delete_authored_by(author_ids, caller)


@posts_router.get(
    "/{post_id:int}",
    dependencies=[PUBLIC],
    response_model=PostRead,
    responses={**NOT_MODIFIED, **error_responses(404)},
)
async def get_post(
    post: FoundPost, response: Response, if_none_match: IfNoneMatch = None
) -> Row | Response:
    return versioned(post, response, if_none_match)


@posts_router.patch(
    "/{post_id:int}",
    response_model=PostRead,
    responses=error_responses(400, 404, 409, 412),
)
async def update_post(
    caller: SignedIn,
    post_id: IdPath,
    data: PostUpdate,
    posts: Posts,
    if_match: IfMatchDep,
    response: Response,
) -> Post:
    """Change some fields of a post, as its author or an admin; `tags` replaces its set of tags.
    With If-Match, only if the post is still at that version."""
    post = await posts.update(post_id, data, if_match, caller)
    response.headers["ETag"] = etag(post.version)
    return post


@posts_router.delete(
    "/{post_id:int}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(404, 409, 412),
)
async def delete_post(
    caller: SignedIn, post_id: IdPath, posts: Posts, if_match: IfMatchDep
) -> None:
    """Delete a post with its comments, as its author or an admin; with If-Match, only if the
    post is still at that version."""
    await posts.delete(post_id, if_match, caller)


@posts_router.post(
    "/{post_id:int}/comments",
    dependencies=[IDEMPOTENT],
    status_code=status.HTTP_201_CREATED,
    response_model=CommentRead,
    responses=error_responses(400, 404),
    tags=["comments"],
)
async def create_comment(
    caller: SignedIn,
    post_id: IdPath,
    data: CommentCreate,
    comments: Comments,
    request: Request,
    response: Response,
) -> Comment:
    """Comment on a post, as the caller (or, by an admin, as the `author_id` named); 404 if the
    post does not exist or that user was deleted."""
    comment = await comments.create(post_id, data, caller)
    created(request, response, None, "get_comment", comment_id=comment.id)
    return comment


@posts_router.get(
    "/{post_id:int}/comments",
    dependencies=[PUBLIC],
    response_model=list[CommentRead],
    responses=error_responses(404),
    tags=["comments"],
)
async def list_comments(post_id: IdPath, comments: CommentsReader, paging: PagingDep) -> list[Row]:
    """A post's comments, oldest first, a page at a time."""
    return paging.answer(await comments.of_post(post_id, paging.page, OLDEST_FIRST))


@comments_router.get(
    "/{comment_id:int}",
    dependencies=[PUBLIC],
    response_model=CommentRead,
    responses=error_responses(404),
)
async def get_comment(comment: FoundComment) -> Row:
    return comment


@comments_router.delete(
    "/{comment_id:int}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(404),
)
async def delete_comment(caller: SignedIn, comment_id: IdPath, comments: Comments) -> None:
    """Delete a comment, as its author, the author of its post, or an admin."""
    await comments.delete(comment_id, caller)


@tags_router.get("/", dependencies=[PUBLIC], response_model=list[TagRead])
async def list_tags(tags: TagsReader, paging: PagingDep) -> list[Row]:
    """Tags with the number of posts using each, most used first, then by name."""
    return paging.answer(await tags.page(paging.page))
