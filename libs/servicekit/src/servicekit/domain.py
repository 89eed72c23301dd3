"""What a service's rules refuse, in the service's own terms.

Services, repositories and the keyset pager raise these; none of them knows HTTP. The answer
each gets (its status code, headers and body) is decided once, at the edge, by
servicekit.errors.install_error_handlers.
"""

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")

# Where in the request an input was, as FastAPI names it in a 422: ("body", "category_id"),
# ("body", 3, "category_id"), ("query", "after").
Location = tuple[str | int, ...]


class DomainError(Exception):
    """A refusal the client can act on; `detail` goes out as it is, and `retry_after`, when
    set, is how many seconds until repeating the request may succeed."""

    retry_after: int | None = None

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(DomainError):
    """The resource named does not exist."""


class Conflict(DomainError):
    """The request contradicts the current state (a name taken, a category in use)."""


class StaleVersion(DomainError):
    """The client's version of the resource (its If-Match) is no longer current."""


class Forbidden(DomainError):
    """The caller is who they say, and may not do this."""


class Throttled(DomainError):
    """Refused for now; allowed again after `retry_after` seconds."""

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class InvalidInput(DomainError):
    """Input the schema let through that the rules refuse: one message per input at fault."""

    def __init__(self, problems: Sequence[tuple[Location, str]]) -> None:
        super().__init__("; ".join(message for _, message in problems))
        self.problems = list(problems)

    @classmethod
    def at(cls, location: Location, message: str) -> "InvalidInput":
        return cls([(location, message)])


def not_found(noun: str, key: object) -> NotFound:
    return NotFound(f"{noun} {key} not found")


def found(value: T | None, noun: str, key: object) -> T:
    """`value`, unless it is None: then NotFound for the `noun` with this key."""
    if value is None:
        raise not_found(noun, key)
    return value
