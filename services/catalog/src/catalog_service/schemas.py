"""The catalog API's request and response bodies."""

import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    HttpUrl,
    UrlConstraints,
    WithJsonSchema,
)
from pydantic.json_schema import SkipJsonSchema

from servicekit.schemas import Id, JsonInteger, PatchModel, RequestModel, ResponseModel, Text

CENTS = Decimal("0.01")
MAX_STOCK = 1_000_000_000
MAX_BULK_PRODUCTS = 1000
MAX_IMAGE_URL_LENGTH = 2048


def _in_cents(price: Decimal) -> Decimal:
    # Stored with exactly two places, so the response to a create matches every later read;
    # abs() turns "-0" into 0 (anything really negative was refused before this runs).
    return abs(price).quantize(CENTS)


def _fits_the_column(url: HttpUrl) -> HttpUrl:
    # Normalising (punycode, percent-encoding) can lengthen a URL past the limit checked on input.
    if len(str(url)) > MAX_IMAGE_URL_LENGTH:
        raise ValueError(f"must be at most {MAX_IMAGE_URL_LENGTH} characters once normalised")
    return url


def _not_zero(delta: int) -> int:
    if delta == 0:
        raise ValueError("must not be zero")
    return delta


CategoryName = Annotated[str, Text(min_length=1, max_length=100, strip=True)]
CategoryDescription = Annotated[str, Text(max_length=1000)]
ProductName = Annotated[str, Text(min_length=1, max_length=200, strip=True)]
ProductDescription = Annotated[str, Text(max_length=5000)]
# Numeric(10, 2): at most 99,999,999.99, never more than two decimal places, never NaN.
# Not strict: JSON has no decimal type, so a price comes as a number (19.9) or a string ("19.90").
# A string is digits with at most two decimals (no exponent or spaces; zeros after the second
# decimal add nothing, and a zero may be written -0), as the schema says.
PRICE_PATTERN = r"^(?:[0-9]{1,8}(?:\.[0-9]{1,2}0*)?|-0+(?:\.0+)?)$"
MAX_PRICE = Decimal("99999999.99")


def _price_text(value: object) -> object:
    if isinstance(value, str) and not re.fullmatch(PRICE_PATTERN, value):
        raise ValueError("a price is digits with at most two decimals, such as 19.90")
    return value


Price = Annotated[
    Decimal,
    Field(ge=0, max_digits=10, decimal_places=2, allow_inf_nan=False, strict=False),
    BeforeValidator(_price_text),
    AfterValidator(_in_cents),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0, "maximum": float(MAX_PRICE), "multipleOf": 0.01},
                {"type": "string", "pattern": PRICE_PATTERN},
            ],
            "examples": ["19.90"],
        },
        mode="validation",
    ),
]
StockQuantity = Annotated[int, Field(ge=0, le=MAX_STOCK), JsonInteger]
ImageUrl = Annotated[
    HttpUrl,
    UrlConstraints(max_length=MAX_IMAGE_URL_LENGTH, allowed_schemes=["http", "https"]),
    AfterValidator(_fits_the_column),
    WithJsonSchema(
        {
            "type": "string",
            "format": "uri",
            "minLength": 1,
            "maxLength": MAX_IMAGE_URL_LENGTH,
            # http(s), and a host name of at most 253 characters (RFC 1035), as URLs are parsed.
            "pattern": "^[hH][tT][tT][pP][sS]?://[^/?#]{1,253}(?:[/?#]|$)",
        },
        mode="validation",
    ),
]
StockDelta = Annotated[
    int,
    Field(ge=-MAX_STOCK, le=MAX_STOCK, json_schema_extra={"not": {"const": 0}}),
    JsonInteger,
    AfterValidator(_not_zero),
]
SortDirection = Literal["asc", "desc"]
CategorySortField = Literal["id", "name"]
ProductSortField = Literal["id", "name", "price", "created_at"]


class CategoryCreate(RequestModel):
    name: CategoryName
    description: CategoryDescription | None = None


class CategoryUpdate(PatchModel):
    nullable_fields = frozenset({"description"})

    name: CategoryName | SkipJsonSchema[None] = None
    description: CategoryDescription | None = None


class CategoryRead(ResponseModel):
    id: int
    name: str
    description: str | None
    created_at: datetime
    updated_at: datetime
    version: int


class CategorySummary(ResponseModel):
    id: int
    name: str


class ProductCreate(RequestModel):
    name: ProductName
    description: ProductDescription | None = None
    price: Price
    category_id: Id
    stock_quantity: StockQuantity = 0
    is_active: bool = True


class ProductUpdate(PatchModel):
    nullable_fields = frozenset({"description"})

    name: ProductName | SkipJsonSchema[None] = None
    description: ProductDescription | None = None
    price: Price | SkipJsonSchema[None] = None
    category_id: Id | SkipJsonSchema[None] = None
    stock_quantity: StockQuantity | SkipJsonSchema[None] = None
    is_active: bool | SkipJsonSchema[None] = None


class ImageCreate(RequestModel):
    image_url: ImageUrl
    is_primary: bool = False


class ImageUpdate(PatchModel):
    image_url: ImageUrl | SkipJsonSchema[None] = None
    is_primary: bool | SkipJsonSchema[None] = None


class ImageRead(ResponseModel):
    id: int
    product_id: int
    image_url: str
    is_primary: bool
    created_at: datetime


class ProductRead(ResponseModel):
    id: int
    name: str
    description: str | None
    price: Decimal = Field(description="Exact, with two decimal places, as a string: `19.90`.")
    category_id: int
    category: CategorySummary
    stock_quantity: int
    is_active: bool
    images: list[ImageRead]
    created_at: datetime
    updated_at: datetime
    version: int


class StockAdjustment(RequestModel):
    delta: StockDelta = Field(
        description="Units to add (positive) or remove (negative); the stock never goes below 0."
    )
