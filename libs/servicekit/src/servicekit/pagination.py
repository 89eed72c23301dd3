"""Pagination over HTTP: the skip/limit/after query parameters and the Link to the next page.

The keyset cursors themselves, and the SQL that pages a statement, are servicekit.keyset's.
"""

from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlencode

from fastapi import Depends, Query, Request, Response

MAX_LIMIT = 100
MAX_SKIP = 2**31 - 1


@dataclass(frozen=True)
class PageRequest:
    """Which slice of a list the client asked for."""

    skip: int
    limit: int
    after: str | None


Skip = Annotated[int, Query(ge=0, le=MAX_SKIP, description="Rows to skip.")]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Rows to return.")]
After = Annotated[
    str | None,
    Query(
        max_length=512,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="Cursor from the previous page's Link header: rows after it.",
    ),
]


async def page_request(skip: Skip = 0, limit: Limit = 20, after: After = None) -> PageRequest:
    """The pagination query parameters shared by every list."""
    return PageRequest(skip=skip, limit=limit, after=after)


PageDep = Annotated[PageRequest, Depends(page_request)]


def set_next_link(request: Request, response: Response, next_cursor: str | None) -> None:
    """Add the RFC 8288 `Link: <...>; rel="next"` header when another page follows.

    The next page keeps the request's filters and sort and continues from the cursor. The URL
    is a relative reference (RFC 3986, 4.2): never built from the request's Host, which the
    client chose, and right whatever origin the client reached this process by.
    """
    if next_cursor is None:
        return
    params = [(k, v) for k, v in request.query_params.multi_items() if k not in {"skip", "after"}]
    params.append(("after", next_cursor))
    response.headers["Link"] = f'<{request.url.path}?{urlencode(params)}>; rel="next"'
