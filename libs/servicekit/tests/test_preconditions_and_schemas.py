"""Entity tags, conditional requests, and the string and patch rules of request bodies."""

from typing import Annotated, ClassVar

import pytest
from pydantic import ValidationError
from pydantic.json_schema import SkipJsonSchema

from servicekit.domain import StaleVersion
from servicekit.preconditions import IfMatch, etag, is_not_modified, not_modified
from servicekit.schemas import PatchModel, RequestModel, Text


@pytest.mark.parametrize("header", [None, "*", '"3"', '"1", "3"', ' "2" ,"3" '])
def test_if_match_accepts_absent_any_or_the_current_tag(header: str | None) -> None:
    IfMatch(header).check(3)


@pytest.mark.parametrize("header", ['"2"', "3", 'W/"3"', "", "null"])
def test_if_match_refuses_other_weak_or_malformed_tags(header: str) -> None:
    with pytest.raises(StaleVersion):
        IfMatch(header).check(3)


@pytest.mark.parametrize(
    ("header", "expected"),
    [(None, False), ('"3"', True), ('W/"3"', True), ('"2"', False), ("*", True)],
)
def test_if_none_match_uses_the_weak_comparison(header: str | None, expected: bool) -> None:
    assert is_not_modified(header, 3) is expected


def test_a_matching_if_none_match_is_answered_304_with_the_current_etag() -> None:
    answer = not_modified('W/"3"', 3)

    assert answer is not None
    assert (answer.status_code, answer.headers["ETag"], answer.body) == (304, '"3"', b"")
    assert not_modified('"2"', 3) is None
    assert not_modified(None, 3) is None


def test_etags_are_strong_and_quoted() -> None:
    assert etag(12) == '"12"'


class Note(RequestModel):
    title: Annotated[str, Text(min_length=1, max_length=5, strip=True)]
    count: int = 0


class NotePatch(PatchModel):
    nullable_fields: ClassVar[frozenset[str]] = frozenset({"summary"})

    title: Annotated[str, Text(max_length=5)] | SkipJsonSchema[None] = None
    summary: str | None = None


@pytest.mark.parametrize(
    "body",
    [
        {"title": "a\x00b"},
        {"title": "\ud800"},
        {"title": "toolong"},
        {"title": "   "},
        {"title": "ok", "extra": 1},
        {"title": "ok", "count": "5"},
    ],
    ids=["nul", "surrogate", "too-long", "blank", "unknown-field", "coerced-int"],
)
def test_request_bodies_refuse_what_a_database_or_the_schema_would_not_take(
    body: dict[str, object],
) -> None:
    with pytest.raises(ValidationError):
        Note.model_validate(body)


def test_text_is_trimmed_before_its_length_is_checked() -> None:
    assert Note.model_validate({"title": "  abc  "}).title == "abc"


def test_a_patch_keeps_only_the_fields_sent() -> None:
    assert NotePatch.model_validate({"title": "new"}).changes() == {"title": "new"}
    assert NotePatch.model_validate({}).changes() == {}


def test_a_patch_refuses_null_except_for_nullable_fields() -> None:
    with pytest.raises(ValidationError, match="not set to null"):
        NotePatch.model_validate({"title": None})
    assert NotePatch.model_validate({"summary": None}).changes() == {"summary": None}


def test_a_patch_schema_does_not_advertise_null_for_required_fields() -> None:
    title = NotePatch.model_json_schema()["properties"]["title"]

    assert "anyOf" not in title
    assert title["type"] == "string"
