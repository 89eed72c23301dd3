"""The blog API's request and response bodies."""

import unicodedata
from collections.abc import Iterable
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, TypeAdapter, WithJsonSchema, field_validator
from pydantic.json_schema import SkipJsonSchema

from blog_service.models import TAG_NAME_MAX_LENGTH, TITLE_MAX_LENGTH
from servicekit.schemas import WHITESPACE, Id, PatchModel, RequestModel, ResponseModel, Text

MAX_TAGS_PER_POST = 20
CONTENT_MAX_LENGTH = 50_000
COMMENT_MAX_LENGTH = 10_000


def normalise_tag_name(name: str) -> str:
    """The one spelling of a tag: Unicode-normalised, case-folded, whitespace trimmed and collapsed.

    `Python`, ` python ` and `PYTHON` are one tag, stored and shown as `python`.
    """
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())
    normalised = " ".join(folded.split())
    if not normalised:
        raise ValueError("a tag name must not be empty")
    if any(unicodedata.category(char) == "Cc" for char in normalised):
        raise ValueError("a tag name must not contain control characters")
    if len(normalised) > TAG_NAME_MAX_LENGTH:
        raise ValueError(f"a tag name has at most {TAG_NAME_MAX_LENGTH} characters")
    return normalised


def _distinct(names: list[str]) -> list[str]:
    return list(dict.fromkeys(names))


Title = Annotated[str, Text(min_length=1, max_length=TITLE_MAX_LENGTH, strip=True)]
Content = Annotated[str, Text(min_length=1, max_length=CONTENT_MAX_LENGTH)]
CommentContent = Annotated[str, Text(min_length=1, max_length=COMMENT_MAX_LENGTH)]
# The schema's statement of normalise_tag_name's refusals: no control character other than
# whitespace (which is collapsed), and something besides whitespace.
_NOT_CONTROL = "\\x00-\\x08\\x0e-\\x1b\\x7f-\\x84\\x86-\\x9f"
TAG_NAME_PATTERN = f"^[^{_NOT_CONTROL}]*[^{WHITESPACE}{_NOT_CONTROL}][^{_NOT_CONTROL}]*$"
TagName = Annotated[
    str,
    Text(min_length=1, max_length=TAG_NAME_MAX_LENGTH),
    AfterValidator(normalise_tag_name),
    WithJsonSchema(
        {
            "type": "string",
            "minLength": 1,
            "maxLength": TAG_NAME_MAX_LENGTH,
            "pattern": TAG_NAME_PATTERN,
        },
        mode="validation",
    ),
]
# Names that normalise alike count once: ["Python", "python"] is one tag.
TagNames = Annotated[list[TagName], Field(max_length=MAX_TAGS_PER_POST), AfterValidator(_distinct)]
PostSortField = Literal["created_at", "updated_at", "title"]


def _named(author_id: int | None) -> int:
    # Defaults are not validated: None here is a null the client sent.
    if author_id is None:
        raise ValueError("author_id may be left out but not set to null")
    return author_id


# Who wrote a post or comment: the caller unless named, and only an admin names another user.
# `Id | None` rather than `Id | SkipJsonSchema[None]`: an optional value is validated as the one
# type, so a wrong value's error is located at `author_id` itself; the schema shows the integer.
AuthorId = Annotated[
    Id | None,
    AfterValidator(_named),
    WithJsonSchema(TypeAdapter(Id).json_schema()),
    Field(description="The author: by default the caller; only an admin may name another user."),
]


class PostCreate(RequestModel):
    title: Title
    content: Content
    author_id: AuthorId = None
    published: bool = False
    tags: TagNames = Field(default_factory=list)


class PostUpdate(PatchModel):
    title: Title | SkipJsonSchema[None] = None
    content: Content | SkipJsonSchema[None] = None
    published: bool | SkipJsonSchema[None] = None
    tags: TagNames | SkipJsonSchema[None] = None


class PostRead(ResponseModel):
    id: int
    title: str
    content: str
    author_id: int
    published: bool
    created_at: datetime
    updated_at: datetime
    version: int
    tags: list[str]

    @field_validator("tags", mode="before")
    @classmethod
    def _tag_names(cls, tags: Iterable[Any]) -> list[Any]:
        # Posts hold Tag rows; the API speaks of tags by name.
        return [getattr(tag, "name", tag) for tag in tags]


class CommentCreate(RequestModel):
    author_id: AuthorId = None
    content: CommentContent


class CommentRead(ResponseModel):
    id: int
    post_id: int
    author_id: int
    content: str
    created_at: datetime


class TagRead(ResponseModel):
    id: int
    name: str
    post_count: int
