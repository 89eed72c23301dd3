"""Building blocks for API schemas: strict request bodies and strings a database can store."""

from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Self

from annotated_types import Ge, Le
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

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


# What the schema says of every Text: no NUL (Postgres cannot store it).
NO_NUL = "^[^\\x00]*$"


def _character_class(characters: list[int]) -> str:
    """The characters as the body of a regex class, in escapes Python and ECMA-262 both read."""
    parts, start = [], 0
    while start < len(characters):
        end = start
        while end + 1 < len(characters) and characters[end + 1] == characters[end] + 1:
            end += 1
        first, last = characters[start], characters[end]
        parts.append(f"\\u{first:04x}" + (f"-\\u{last:04x}" if last != first else ""))
        start = end + 1
    return "".join(parts)


# What str.strip() removes, spelled out: JSON Schema patterns are ECMA-262 regexes, whose \\s
# differs from Python's (it leaves out U+001C-U+001F and U+0085, and takes U+FEFF).
WHITESPACE = _character_class([code for code in range(0x3001) if chr(code).isspace()])


@dataclass(frozen=True)
class Text:
    """Bounds for a string field, which also rejects what a database cannot store.

    Use as `Annotated[str, Text(max_length=100)]`. With `strip`, whitespace at either end is
    removed first and the bounds apply to what remains (a name of 100 letters after a space
    is 100 characters long); the published schema then states that with a pattern, since
    minLength and maxLength would count the whitespace too.
    """

    max_length: int
    min_length: int = 0
    strip: bool = False

    def __post_init__(self) -> None:
        if self.strip and (self.min_length != 1 or self.max_length < 2):
            raise ValueError("a stripped Text is at least one character long, at most two or more")

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        schema = handler(source)
        if schema["type"] != "str":
            raise TypeError("Text bounds apply to str fields only")
        if self.strip:
            unbounded = core_schema.str_schema(strict=schema.get("strict"))
            return core_schema.no_info_after_validator_function(self._stripped, unbounded)
        bounded = core_schema.str_schema(
            min_length=self.min_length, max_length=self.max_length, strict=schema.get("strict")
        )
        return core_schema.no_info_after_validator_function(_storable, bounded)

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        if not self.strip:
            return {**handler(schema), "pattern": NO_NUL}
        # Anything but NUL, starting and ending (once surrounding whitespace is set aside)
        # with a character that is neither whitespace nor NUL, min_length to max_length long.
        edge = f"[^{WHITESPACE}\\x00]"
        inner = f"[^\\x00]{{0,{self.max_length - 2}}}"
        space = f"[{WHITESPACE}]*"
        return {"type": "string", "pattern": f"^{space}{edge}(?:{inner}{edge})?{space}$"}

    def _stripped(self, value: str) -> str:
        value = _storable(value).strip()
        if len(value) < self.min_length:
            raise PydanticCustomError(
                "string_too_short",
                "String should have at least {min_length} character once trimmed",
                {"min_length": self.min_length},
            )
        if len(value) > self.max_length:
            raise PydanticCustomError(
                "string_too_long",
                "String should have at most {max_length} characters once trimmed",
                {"max_length": self.max_length},
            )
        return value


def _integral(value: object) -> object:
    # JSON Schema's integers include 5.0; strict validation would refuse it as a float.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# An integer in a JSON body: as the schema's "integer" has it, 5.0 is one.
JsonInteger = BeforeValidator(_integral)
Id = Annotated[int, Ge(1), Le(MAX_ID), JsonInteger]


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


# The body of every process's probes, GET /health/live and /health/ready (no docstring: it
# would become the schema's description in every OpenAPI document).
class Health(BaseModel):
    status: str
    checks: dict[str, str] = {}
    # What background work reports (an event consumer's cursor, lag and parked events): shown,
    # not judged, since a service whose consumer lags still serves its requests.
    details: dict[str, Any] = {}
