"""HTTP endpoints of the blog service: posts, comments and tags."""

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response, status

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
from blog_service.service import (
    CommentQueries,
    CommentService,
    PostQueries,
    PostService,
    TagQueries,
    post_service,
)
from servicekit.auth import PUBLIC, SignedIn
from servicekit.database import SessionDep, get_database
from servicekit.domain import InvalidInput
from servicekit.errors import error_responses
from servicekit.idempotency import IDEMPOTENT, IdempotentRoute
from servicekit.keyset import SortOrder
from servicekit.pagination import MAX_LIMIT, PageDep, set_next_link
from servicekit.preconditions import IfMatchDep, etag, not_modified
from servicekit.reads import Row
from servicekit.schemas import MAX_ID, Id, Text

posts_router = APIRouter(prefix="/posts", tags=["posts"], route_class=IdempotentRoute)
comments_router = APIRouter(prefix="/comments", tags=["comments"])
tags_router = APIRouter(prefix="/tags", tags=["tags"])

PostId = Annotated[int, Path(ge=1, le=MAX_ID)]
CommentId = Annotated[int, Path(ge=1, le=MAX_ID)]
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


async def _post_reader(request: Request) -> PostQueries:
    return PostQueries(PostReads(get_database(request)))


async def _comment_writer(session: SessionDep) -> CommentService:
    return CommentService(CommentRepository(session), AuthorRepository(session))


async def _comment_reader(request: Request) -> CommentQueries:
    database = get_database(request)
    return CommentQueries(CommentReads(database), PostReads(database))


async def _tag_reader(request: Request) -> TagQueries:
    return TagQueries(TagReads(get_database(request)))


Posts = Annotated[PostService, Depends(_post_writer)]
PostsReader = Annotated[PostQueries, Depends(_post_reader)]
Comments = Annotated[CommentService, Depends(_comment_writer)]
CommentsReader = Annotated[CommentQueries, Depends(_comment_reader)]
TagsReader = Annotated[TagQueries, Depends(_tag_reader)]


def _sort_order(field: PostSortField, direction: Literal["asc", "desc"]) -> SortOrder:
    return SortOrder(
        f"{field}:{direction}", (getattr(Post, field), Post.id), descending=direction == "desc"
    )


def _with_etag(post: Post, response: Response) -> Post:
    response.headers["ETag"] = etag(post.version)
    return post


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
    response.headers["Location"] = str(request.app.url_path_for("get_post", post_id=post.id))
    return _with_etag(post, response)


@posts_router.get("/", dependencies=[PUBLIC], response_model=list[PostRead])
async def list_posts(
    posts: PostsReader,
    page: PageDep,
    request: Request,
    response: Response,
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
        result = await posts.list(page, _sort_order(sort_by, order), post_filter)
        set_next_link(request, response, result.next_cursor)
        return result.items
    if not author_ids:
        raise InvalidInput.at(
            ("query", "per_author"),
            "per_author needs at least one author_id: it reads the newest posts of each one",
        )
    paging = [name for name in _PAGE_PARAMETERS if name in request.query_params]
    if paging:
        raise InvalidInput.at(
            ("query", "per_author"),
            "per_author reads a bounded batch ordered by author, then newest first, not a page: "
            f"it cannot be combined with {', '.join(paging)}",
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
    responses={304: {"description": "Not modified (If-None-Match)"}, **error_responses(404)},
)
async def get_post(
    post_id: PostId,
    posts: PostsReader,
    response: Response,
    if_none_match: Annotated[str | None, Header(max_length=1024)] = None,
) -> Row | Response:
    post = await posts.get(post_id)
    if unchanged := not_modified(if_none_match, post["version"]):
        return unchanged
    response.headers["ETag"] = etag(post["version"])
    return post


@posts_router.patch(
    "/{post_id:int}",
    response_model=PostRead,
    responses=error_responses(400, 404, 409, 412),
)
async def update_post(
    caller: SignedIn,
    post_id: PostId,
    data: PostUpdate,
    posts: Posts,
    if_match: IfMatchDep,
    response: Response,
) -> Post:
    """Change some fields of a post, as its author or an admin; `tags` replaces its set of tags.
    With If-Match, only if the post is still at that version."""
    return _with_etag(await posts.update(post_id, data, if_match, caller), response)


@posts_router.delete(
    "/{post_id:int}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(404, 409, 412),
)
async def delete_post(
    caller: SignedIn, post_id: PostId, posts: Posts, if_match: IfMatchDep
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
    post_id: PostId,
    data: CommentCreate,
    comments: Comments,
    request: Request,
    response: Response,
) -> Comment:
    """Comment on a post, as the caller (or, by an admin, as the `author_id` named); 404 if the
    post does not exist or that user was deleted."""
    comment = await comments.create(post_id, data, caller)
    response.headers["Location"] = str(
        request.app.url_path_for("get_comment", comment_id=comment.id)
    )
    return comment


@posts_router.get(
    "/{post_id:int}/comments",
    dependencies=[PUBLIC],
    response_model=list[CommentRead],
    responses=error_responses(404),
    tags=["comments"],
)
async def list_comments(
    post_id: PostId,
    comments: CommentsReader,
    page: PageDep,
    request: Request,
    response: Response,
) -> list[Row]:
    """A post's comments, oldest first, a page at a time."""
    result = await comments.list(post_id, page, OLDEST_FIRST)
    set_next_link(request, response, result.next_cursor)
    return result.items


@comments_router.get(
    "/{comment_id:int}",
    dependencies=[PUBLIC],
    response_model=CommentRead,
    responses=error_responses(404),
)
async def get_comment(comment_id: CommentId, comments: CommentsReader) -> Row:
    return await comments.get(comment_id)


@comments_router.delete(
    "/{comment_id:int}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(404),
)
async def delete_comment(caller: SignedIn, comment_id: CommentId, comments: Comments) -> None:
    """Delete a comment, as its author, the author of its post, or an admin."""
    await comments.delete(comment_id, caller)


@tags_router.get("/", dependencies=[PUBLIC], response_model=list[TagRead])
async def list_tags(
    tags: TagsReader, page: PageDep, request: Request, response: Response
) -> list[Row]:
    """Tags with the number of posts using each, most used first, then by name."""
    result = await tags.list(page)
    set_next_link(request, response, result.next_cursor)
    return result.items
