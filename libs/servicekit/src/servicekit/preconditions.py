"""Entity tags from a resource's version, and the If-Match / If-None-Match checks on them."""

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request, Response, status

from servicekit.domain import StaleVersion


def etag(version: int) -> str:
    """The strong entity tag of a resource version."""
    return f'"{version}"'


def _listed_tags(header: str) -> set[str]:
    return {tag for tag in (part.strip() for part in header.split(",")) if tag}


@dataclass(frozen=True)
class IfMatch:
    """The request's If-Match header: absent, `*`, or a list of entity tags."""

    header: str | None

    def check(self, version: int) -> None:
        """Raise 412 unless the header is absent, `*`, or names the current version.

        If-Match uses the strong comparison, so a weak tag (`W/"3"`) never matches.
        """
        if self.header is None:
            return
        tags = _listed_tags(self.header)
        if "*" not in tags and etag(version) not in tags:
            raise StaleVersion(
                f"the resource is at version {version}; fetch it again before changing it"
            )


async def _if_match(
    request: Request, if_match: Annotated[str | None, Header(max_length=1024)] = None
) -> IfMatch:
    # The parameter documents the header and bounds its first line; a header sent more than
    # once is one list of all its lines (RFC 9110, 5.3), as if they had been sent as one.
    lines = request.headers.getlist("if-match")
    return IfMatch(", ".join(lines) if lines else if_match)


IfMatchDep = Annotated[IfMatch, Depends(_if_match)]


def is_not_modified(if_none_match: str | None, version: int) -> bool:
    """Whether a GET's If-None-Match names the current version, so 304 is the answer."""
    if if_none_match is None:
        return False
    tags = {tag.removeprefix("W/") for tag in _listed_tags(if_none_match)}
    return "*" in tags or etag(version) in tags


def not_modified(if_none_match: str | None, version: int) -> Response | None:
    """The 304 answer to a GET whose If-None-Match names the current version, else None."""
    if is_not_modified(if_none_match, version):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers={"ETag": etag(version)})
    return None
