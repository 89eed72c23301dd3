"""Building blocks for API schemas: strict request bodies and strings a database can store."""

from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Self

from annotated_types import Ge, Le
from pydantic import BaseModel, ConfigDict, GetCoreSchemaHandler, model_validator
from pydantic_core import core_schema

# Ids are 32-bit integers in every service; anything larger could never exist.
MAX_ID = 2**31 - 1


def _storable(value: str) -> str:
    # Postgres rejects NUL in text, and lone surrogates cannot be encoded as UTF-8.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    if not value.isascii():
        try:
            value.encode()  # in C: a lone surrogate has no UTF-8 form
        except UnicodeEncodeError:
            raise ValueError("must not contain unpaired surrogates") from None
    return value


@dataclass(frozen=True)
class Text:
    """Bounds for a string field, which also rejects what a database cannot store.

    Use as `Annotated[str, Text(max_length=100)]`.
    """

    max_length: int
    min_length: int = 0
    strip: bool = False

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        schema = handler(source)
        if schema["type"] != "str":
            raise TypeError("Text bounds apply to str fields only")
        bounded = core_schema.str_schema(
            min_length=self.min_length,
            max_length=self.max_length,
            strip_whitespace=self.strip,
            strict=schema.get("strict"),
        )
        return core_schema.no_info_after_validator_function(_storable, bounded)


Id = Annotated[int, Ge(1), Le(MAX_ID)]


class RequestModel(BaseModel):
    """Base of request bodies: unknown fields are an error, and types are not coerced.

    Strict validation means the body must match the published schema: `0` is not a boolean
    and `"5"` is not an integer.
    """

    model_config = ConfigDict(extra="forbid", strict=True)


class PatchModel(RequestModel):
    """Base of partial updates: a field left out is unchanged, and null is refused.

    Declare fields as `name: Annotated[str, ...] | SkipJsonSchema[None] = None`: the schema then
    shows only the real type, and an explicit null is rejected here rather than reaching a
    NOT NULL column. Fields that may really be null are listed in `nullable_fields`.
    """

    nullable_fields: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="after")
    def _refuse_null(self) -> Self:
        for name in self.model_fields_set - self.nullable_fields:
            if getattr(self, name) is None:
                raise ValueError(f"{name} may be left out but not set to null")
        return self

    def changes(self) -> dict[str, Any]:
        """The fields the client sent, with their new values."""
        return self.model_dump(exclude_unset=True)


class ResponseModel(BaseModel):
    """Base of response bodies, readable straight from ORM objects."""

    model_config = ConfigDict(from_attributes=True)
