"""The users API's request and response bodies."""

from datetime import datetime
from typing import Annotated, Literal, Self

from pydantic import ConfigDict, EmailStr, Field, WithJsonSchema, model_validator
from pydantic.json_schema import SkipJsonSchema

from servicekit.schemas import PatchModel, RequestModel, ResponseModel, Text

Name = Annotated[str, Text(min_length=1, max_length=100, strip=True)]
Password = Annotated[str, Text(min_length=8, max_length=128)]
CurrentPassword = Annotated[str, Text(max_length=128)]
UserSortField = Literal["id", "name", "email", "created_at"]
# email-validator refuses the special-use domains (RFC 6761: .test, .localhost, ...), which the
# "email" format alone does not; the pattern says so, in any letter case.
_SPECIAL_USE = "|".join(
    "".join(f"[{letter}{letter.upper()}]" for letter in name)
    for name in ("arpa", "invalid", "local", "localhost", "onion", "test")
)
Email = Annotated[
    EmailStr,
    WithJsonSchema(
        {"type": "string", "format": "email", "pattern": rf"^(?!.*[.@](?:{_SPECIAL_USE})\.?$)"},
        mode="validation",
    ),
]


class UserCreate(RequestModel):
    email: Email
    name: Name
    # Never echoed: repr=False keeps it out of the model's repr, and so out of any log of one.
    password: Password = Field(repr=False)
    is_active: bool = True


class UserUpdate(PatchModel):
    """A partial update. Changing `password` needs `current_password` unless an admin does it."""

    # current_password comes only with a new password (the draft 7 spelling for generators).
    model_config = ConfigDict(
        json_schema_extra={
            "dependentRequired": {"current_password": ["password"]},
            "dependencies": {"current_password": ["password"]},
        }
    )

    email: Email | SkipJsonSchema[None] = None
    name: Name | SkipJsonSchema[None] = None
    is_active: bool | SkipJsonSchema[None] = Field(default=None, description="Admins only.")
    is_admin: bool | SkipJsonSchema[None] = Field(default=None, description="Admins only.")
    password: Password | SkipJsonSchema[None] = Field(default=None, repr=False)
    current_password: CurrentPassword | SkipJsonSchema[None] = Field(default=None, repr=False)

    @model_validator(mode="after")
    def _current_password_goes_with_a_new_one(self) -> Self:
        if self.current_password is not None and self.password is None:
            raise ValueError("current_password is only for changing the password")
        return self


class UserProfile(ResponseModel):
    """What anyone may read of a user."""

    id: int
    name: str
    created_at: datetime


class UserRead(ResponseModel):
    """The whole record: for the user themselves and admins."""

    id: int
    email: str
    name: str
    is_active: bool
    is_admin: bool
    created_at: datetime
    updated_at: datetime
    version: int


# A read answers the whole record to the user and admins, the public profile to anyone else.
UserView = UserRead | UserProfile


class UserStats(ResponseModel):
    """How many users there are, under the tutorial's field names."""

    total_users: int
    active_users: int
    inactive_users: int


class TokenAnswer(ResponseModel):
    """The answer of a successful login or refresh (RFC 6749, section 5.1)."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the scheme, not a secret
    expires_in: int = Field(description="Seconds until the access token expires.")
    refresh_token: str
