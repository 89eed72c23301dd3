"""What every resource's routes share: the path id, entity tags on answers, and pages.

A route reads as its resource's rule, and these do the HTTP around it the same way everywhere:

    @router.get("/{category_id:int}", responses={**NOT_MODIFIED, **error_responses(404)})
    async def get_category(category: Found, response: Response, if_none_match: IfNoneMatch = None):
        return versioned(category, response, if_none_match)
"""

from dataclasses import dataclass
from typing import Annotated, Any, Protocol

from fastapi import Depends, Header, Path, Request, Response

from servicekit.pagination import After, Limit, PageRequest, Skip, set_next_link
from servicekit.preconditions import etag, not_modified
from servicekit.schemas import MAX_ID

IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]
IfNoneMatch = Annotated[str | None, Header(max_length=1024)]
NOT_MODIFIED: dict[int | str, dict[str, Any]] = {
    304: {"description": "Not modified (If-None-Match)"}
}


def versioned(
    resource: dict[str, Any], response: Response, if_none_match: str | None
) -> dict[str, Any] | Response:
    """A GET's answer: 304 if If-None-Match names the resource's version, else the resource
    with its ETag."""
    if unchanged := not_modified(if_none_match, resource["version"]):
        return unchanged
    response.headers["ETag"] = etag(resource["version"])
    return resource


def created(
    request: Request, response: Response, version: int | None, route: str, **path: int
) -> None:
    """A 201's headers: Location, the new resource as the GET route `route` serves it, and
    the ETag of its first version if it has versions."""
    response.headers["Location"] = str(request.app.url_path_for(route, **path))
    if version is not None:
        response.headers["ETag"] = etag(version)


class _Page(Protocol):
    # servicekit.keyset.Page, named by its shape: this module serves processes without SQL.
    @property
    def items(self) -> list[Any]: ...
    @property
    def next_cursor(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Paging:
    """The page a list was asked for, and how its answer links to the next one."""

    page: PageRequest
    request: Request
    response: Response

    def answer(self, result: _Page) -> list[Any]:
        """The page's items, with a Link to the next page when there is one."""
        set_next_link(self.request, self.response, result.next_cursor)
        return result.items


# The query parameters are its own, not a PageDep's: FastAPI resolves each level of
# dependencies on every request.
async def _paging(
    request: Request, response: Response, skip: Skip = 0, limit: Limit = 20, after: After = None
) -> Paging:
    return Paging(PageRequest(skip, limit, after), request, response)


PagingDep = Annotated[Paging, Depends(_paging)]
