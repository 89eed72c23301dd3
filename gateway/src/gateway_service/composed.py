"""Views the gateway composes from several services, each with a fixed number of calls."""

import asyncio
from collections import defaultdict
from collections.abc import Awaitable
from typing import Annotated, Any, Literal, TypeVar

import httpx
import pydantic_core
from fastapi import APIRouter, Depends, Header, Query, Request, Response, status

from gateway_service.downstream import Downstream
from gateway_service.errors import UpstreamResponse
from gateway_service.openapi import DocumentedBy
from gateway_service.proxy import downstream_of, forward, forwarded_headers, relay
from gateway_service.schemas import PostWithAuthorAndComments, UserWithPosts
from servicekit.auth import PUBLIC, SignedIn
from servicekit.domain import InvalidInput
from servicekit.errors import error_responses
from servicekit.pagination import MAX_LIMIT, PageDep, PageRequest, set_next_link
from servicekit.routes import IdPath

router = APIRouter()
T = TypeVar("T")


async def _downstream(request: Request) -> Downstream:
    return downstream_of(request)


DownstreamDep = Annotated[Downstream, Depends(_downstream)]
MAX_POSTS_PER_USER = 49  # blog answers at most 50 per author; one more tells if there are more

# The composed views that pass a request on to blog take their documentation from blog's.
DOCUMENTED_BY = (
    DocumentedBy("get", "/users/{user_id}/posts", "blog", "/posts/", {"author_id", "per_author"}),
    DocumentedBy("post", "/users/{user_id}/posts", "blog", "/posts/", {"author_id"}),
)


async def concurrently(*calls: Awaitable[T]) -> list[T]:
    """Await independent calls at the same time; if one fails, the others are cancelled."""
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        raise


def _page_params(page: PageRequest) -> list[tuple[str, str | int]]:
    params: list[tuple[str, str | int]] = [("skip", page.skip), ("limit", page.limit)]
    if page.after is not None:
        params.append(("after", page.after))
    return params


def _next_cursor(answer: httpx.Response) -> str | None:
    next_url = answer.links.get("next", {}).get("url")
    if next_url is None:
        return None
    cursor: str | None = httpx.URL(next_url).params.get("after")
    return cursor


def _json(answer: httpx.Response) -> Any:
    # pydantic-core's JSON parser and serialiser are several times faster than the stdlib's.
    return pydantic_core.from_json(answer.content)


def _json_response(body: Any, status_code: int = 200) -> Response:
    # Bodies are assembled from services' JSON, which is already valid; no re-validation.
    return Response(
        pydantic_core.to_json(body), status_code=status_code, media_type="application/json"
    )


@router.get(
    "/users-with-posts",
    dependencies=[PUBLIC],
    response_model=list[UserWithPosts],
    tags=["composed"],
    responses=error_responses(503),
)
async def users_with_posts(
    request: Request,
    downstream: DownstreamDep,
    page: PageDep,
    posts_per_user: Annotated[
        int, Query(ge=1, le=MAX_POSTS_PER_USER, description="Newest posts shown per user.")
    ] = 5,
) -> Response:
    """A page of users, each with their newest posts: one users call and one blog call."""
    users_answer = await downstream.expect_ok("users", "GET", "/users/", params=_page_params(page))
    users: list[dict[str, Any]] = _json(users_answer)
    posts_by_author: dict[int, list[dict[str, Any]]] = defaultdict(list)
    if users:
        posts_answer = await downstream.expect_ok(
            "blog",
            "GET",
            "/posts/",
            params=[("author_id", user["id"]) for user in users]
            + [("per_author", posts_per_user + 1)],
        )
        for post in _json(posts_answer):
            posts_by_author[post["author_id"]].append(post)
    for user in users:
        posts = posts_by_author[user["id"]]
        user["posts"] = posts[:posts_per_user]
        user["has_more_posts"] = len(posts) > posts_per_user
    response = _json_response(users)
    set_next_link(request, response, _next_cursor(users_answer))
    return response


@router.get(
    "/users/{user_id:int}/posts",
    dependencies=[PUBLIC],
    tags=["composed"],
    responses=error_responses(404, 503),
)
async def posts_of_user(user_id: IdPath, request: Request, downstream: DownstreamDep) -> Response:
    """A user's posts, with blog's filters, sorting and pagination; 404 if the user is unknown."""
    params = [
        (name, value)
        for name, value in request.query_params.multi_items()
        if name not in {"author_id", "per_author"}
    ]
    user_answer, posts_answer = await concurrently(
        downstream.request("users", "GET", f"/users/{user_id}"),
        downstream.request("blog", "GET", "/posts/", params=[*params, ("author_id", user_id)]),
    )
    if not user_answer.is_success:
        return relay(request, downstream, "users", user_answer)
    if not posts_answer.is_success:
        return relay(request, downstream, "blog", posts_answer)
    response = Response(posts_answer.content, media_type="application/json")
    set_next_link(request, response, _next_cursor(posts_answer))
    return response


@router.post(
    "/users/{user_id:int}/posts",
    status_code=status.HTTP_201_CREATED,
    tags=["composed"],
    responses=error_responses(404, 503),
)
async def create_post_for_user(
    user_id: IdPath, request: Request, downstream: DownstreamDep, _caller: SignedIn
) -> Response:
    """Create a post authored by the user in the path (themselves, or anyone for an admin);
    404 if that user was deleted."""
    body, post = await _json_object(request)
    if post is not None and "author_id" in post:
        raise InvalidInput.at(("body", "author_id"), "the author is the user in the path")
    # Blog judges the body as the client sent it, with the author added.
    content = _with_author(body, user_id, post) if post is not None else body
    answer = await downstream.request(
        "blog", "POST", "/posts/", content=content, headers=forwarded_headers(request)
    )
    return relay(request, downstream, "blog", answer)


async def _json_object(request: Request) -> tuple[bytes, dict[str, Any] | None]:
    """The body as the client sent it, and the JSON object in it (None if there is none).

    Bodies are passed on as sent, never decoded and encoded again: NaN, a lone surrogate or a
    number too large for a float would not survive the round trip, and blog, which owns the
    schema, answers for them as it would if called directly.
    """
    body = await request.body()
    try:
        value = pydantic_core.from_json(body, allow_inf_nan=False)
    except ValueError:
        return body, None
    return body, value if isinstance(value, dict) else None


def _with_author(body: bytes, author_id: int, value: dict[str, Any]) -> bytes:
    """The JSON object `body` (decoded as `value`) with `author_id` as its first member."""
    rest = body[body.index(b"{") + 1 :]  # only whitespace can come before the brace
    separator = b"," if value else b""
    return b'{"author_id":%d%s%s' % (author_id, separator, rest)


# Every value `expand` takes, stated in the schema as an enum; the order does not matter.
Expansion = Literal["author", "comments", "author,comments", "comments,author"]


def _expansions(expand: Expansion | None) -> frozenset[str]:
    return frozenset(expand.split(",")) if expand else frozenset()


@router.get(
    "/posts/{post_id:int}",
    dependencies=[PUBLIC],
    response_model=PostWithAuthorAndComments,
    tags=["composed"],
    responses={
        304: {"description": "Not modified (If-None-Match, without expand)"},
        **error_responses(404, 503),
    },
)
async def get_post(
    post_id: IdPath,
    request: Request,
    downstream: DownstreamDep,
    expand: Annotated[
        Expansion | None,
        Query(description="`author`, `comments` or `author,comments`."),
    ] = None,
    comments_limit: Annotated[
        int, Query(ge=1, le=MAX_LIMIT - 1, description="Comments included by expand=comments.")
    ] = 20,
    # Passed on with the request's headers (forwarded_headers): documented here.
    _if_none_match: Annotated[
        str | None,
        Header(
            alias="If-None-Match",
            max_length=1024,
            description="Without expand: 304 if the post still has this ETag.",
        ),
    ] = None,
) -> Response:
    """A post; `expand=author,comments` adds its comments and every author among them.

    All the authors are read with one batched users call; an author who no longer exists is
    shown as null.
    """
    expansions = _expansions(expand)
    if not expansions:
        return await forward(request, "blog", f"/posts/{post_id}")
    calls = [downstream.request("blog", "GET", f"/posts/{post_id}")]
    if "comments" in expansions:
        calls.append(
            downstream.request(
                "blog", "GET", f"/posts/{post_id}/comments", params={"limit": comments_limit}
            )
        )
    post_answer, *comments_answers = await concurrently(*calls)
    if not post_answer.is_success:
        return relay(request, downstream, "blog", post_answer)
    post: dict[str, Any] = _json(post_answer)
    if comments_answers:
        comments_answer = comments_answers[0]
        if not comments_answer.is_success:
            return relay(request, downstream, "blog", comments_answer)
        post["comments"] = _json(comments_answer)
    if "author" in expansions:
        people = [post, *post.get("comments", [])]
        authors = await _users_by_id(downstream, {person["author_id"] for person in people})
        for person in people:
            person["author"] = authors.get(person["author_id"])
    # No ETag: the post's version says nothing of its comments or authors, so it would
    # validate a body that has changed (If-None-Match applies to the plain post only).
    return _json_response(post)


async def _users_by_id(downstream: Downstream, ids: set[int]) -> dict[int, dict[str, Any]]:
    answer = await downstream.expect_ok(
        "users", "GET", "/users/", params=[("id", i) for i in sorted(ids)] + [("limit", MAX_LIMIT)]
    )
    return {user["id"]: user for user in _json(answer)}


async def upstream_response(request: Request, exc: Exception) -> Response:
    """Relay a downstream answer that a composed view does not continue from."""
    assert isinstance(exc, UpstreamResponse)
    return relay(request, downstream_of(request), exc.service, exc.response)
