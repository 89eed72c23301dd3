"""The users API's request and response bodies."""

from datetime import datetime
from typing import Annotated, Literal

from pydantic import EmailStr
from pydantic.json_schema import SkipJsonSchema

from servicekit.schemas import PatchModel, RequestModel, ResponseModel, Text

Name = Annotated[str, Text(min_length=1, max_length=100, strip=True)]
UserSortField = Literal["id", "name", "email", "created_at"]


class UserCreate(RequestModel):
    email: EmailStr
    name: Name
    is_active: bool = True


class UserUpdate(PatchModel):
    email: EmailStr | SkipJsonSchema[None] = None
    name: Name | SkipJsonSchema[None] = None
    is_active: bool | SkipJsonSchema[None] = None


class UserRead(ResponseModel):
    id: int
    email: str
    name: str
    is_active: bool
    created_at: datetime
    updated_at: datetime
    version: int


class UserStats(ResponseModel):
    total: int
    active: int
    inactive: int
