"""HTTP endpoints of the catalog service."""

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Query, Request, Response, status

from catalog_service.models import Category, Product, ProductImage
from catalog_service.repository import (
    CategoryReads,
    CategoryRepository,
    ProductFilters,
    ProductReads,
    ProductRepository,
)
from catalog_service.schemas import (
    MAX_BULK_PRODUCTS,
    CategoryCreate,
    CategoryRead,
    CategorySortField,
    CategoryUpdate,
    ImageCreate,
    ImageRead,
    ImageUpdate,
    Price,
    ProductCreate,
    ProductRead,
    ProductSortField,
    ProductUpdate,
    SortDirection,
    StockAdjustment,
)
from catalog_service.service import CategoryService, ProductService
from servicekit.auth import ADMIN_ONLY, PUBLIC
from servicekit.database import SessionDep
from servicekit.domain import InvalidInput
from servicekit.errors import error_responses
from servicekit.idempotency import IDEMPOTENT, IdempotentRoute
from servicekit.keyset import SortOrder
from servicekit.preconditions import IfMatchDep, etag
from servicekit.reads import Row
from servicekit.routes import NOT_MODIFIED, IdPath, IfNoneMatch, PagingDep, created, versioned
from servicekit.schemas import Id, Text

categories_router = APIRouter(
    prefix="/categories", tags=["categories"], route_class=IdempotentRoute
)
products_router = APIRouter(prefix="/products", tags=["products"], route_class=IdempotentRoute)

IMAGES_BY_ID = SortOrder("id", (ProductImage.id,))


async def _category_writer(session: SessionDep) -> CategoryService:
    return CategoryService(CategoryRepository(session), ProductRepository(session))


async def _product_writer(session: SessionDep) -> ProductService:
    return ProductService(ProductRepository(session), CategoryRepository(session))


Categories = Annotated[CategoryService, Depends(_category_writer)]
CategoriesReader = Annotated[CategoryReads, Depends(CategoryReads.of)]
FoundCategory = Annotated[Row, Depends(CategoryReads.found_by("category_id"))]
Products = Annotated[ProductService, Depends(_product_writer)]
ProductsReader = Annotated[ProductReads, Depends(ProductReads.of)]
FoundProduct = Annotated[Row, Depends(ProductReads.found_by("product_id"))]


def _sort_order(
    model: type[Category] | type[Product], field: str, direction: SortDirection
) -> SortOrder:
    columns = (model.id,) if field == "id" else (getattr(model, field), model.id)
    return SortOrder.by(field, direction, *columns)


async def _category_order(
    sort_by: Annotated[CategorySortField, Query(description="Field to sort by.")] = "id",
    order: Annotated[SortDirection, Query(description="Sort direction; ties by id.")] = "asc",
) -> SortOrder:
    return _sort_order(Category, sort_by, order)


async def _product_order(
    sort_by: Annotated[ProductSortField, Query(description="Field to sort by.")] = "id",
    order: Annotated[SortDirection, Query(description="Sort direction; ties by id.")] = "asc",
) -> SortOrder:
    return _sort_order(Product, sort_by, order)


CategoryOrder = Annotated[SortOrder, Depends(_category_order)]
ProductOrder = Annotated[SortOrder, Depends(_product_order)]


async def _product_filters(
    category_id: Annotated[Id | None, Query(description="Only products of this category.")] = None,
    min_price: Annotated[Price | None, Query(description="Price at least this.")] = None,
    max_price: Annotated[Price | None, Query(description="Price at most this.")] = None,
    is_active: Annotated[bool | None, Query(description="Only (in)active products.")] = None,
    q: Annotated[
        Annotated[str, Text(max_length=200)] | None,
        Query(description="Name contains this text, ignoring case."),
    ] = None,
) -> ProductFilters:
    if min_price is not None and max_price is not None and min_price > max_price:
        raise InvalidInput.at(("query", "min_price"), "must not be greater than max_price")
    return ProductFilters(
        category_id=category_id,
        min_price=min_price,
        max_price=max_price,
        is_active=is_active,
        name_contains=q,
    )


ProductFiltersDep = Annotated[ProductFilters, Depends(_product_filters)]


@categories_router.post(
    "/",
    dependencies=[ADMIN_ONLY, IDEMPOTENT],
    status_code=status.HTTP_201_CREATED,
    response_model=CategoryRead,
    responses=error_responses(400, 409),
)
async def create_category(
    data: CategoryCreate, categories: Categories, request: Request, response: Response
) -> Category:
    """Create a category. 409 if the name exists in any letter case."""
    category = await categories.create(data)
    created(request, response, category.version, "get_category", category_id=category.id)
    return category


@categories_router.get("/", dependencies=[PUBLIC], response_model=list[CategoryRead])
async def list_categories(
    categories: CategoriesReader, paging: PagingDep, order: CategoryOrder
) -> list[Row]:
    """Categories, a page at a time, sorted by id or name."""
    return paging.answer(await categories.page(paging.page, order))


@categories_router.get(
    "/{category_id:int}",
    dependencies=[PUBLIC],
    response_model=CategoryRead,
    responses={**NOT_MODIFIED, **error_responses(404)},
)
async def get_category(
    category: FoundCategory, response: Response, if_none_match: IfNoneMatch = None
) -> Row | Response:
    return versioned(category, response, if_none_match)


@categories_router.patch(
    "/{category_id:int}",
    dependencies=[ADMIN_ONLY],
    response_model=CategoryRead,
    responses=error_responses(400, 404, 409, 412),
)
async def update_category(
    category_id: IdPath,
    data: CategoryUpdate,
    categories: Categories,
    if_match: IfMatchDep,
    response: Response,
) -> Category:
    """Change some fields of a category; with If-Match, only if it is still at that version."""
    category = await categories.update(category_id, data, if_match)
    response.headers["ETag"] = etag(category.version)
    return category


@categories_router.delete(
    "/{category_id:int}",
    dependencies=[ADMIN_ONLY],
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(404, 409, 412),
)
async def delete_category(
    category_id: IdPath, categories: Categories, if_match: IfMatchDep
) -> None:
    """Delete a category that has no products (409 while it has)."""
    await categories.delete(category_id, if_match)


@categories_router.get(
    "/{category_id:int}/products",
    dependencies=[PUBLIC],
    response_model=list[ProductRead],
    responses=error_responses(404),
)
async def list_category_products(
    category_id: IdPath, products: ProductsReader, paging: PagingDep, order: ProductOrder
) -> list[Row]:
    """The products of a category, a page at a time, with their images."""
    return paging.answer(await products.of_category(category_id, paging.page, order))


@products_router.post(
    "/",
    dependencies=[ADMIN_ONLY, IDEMPOTENT],
    status_code=status.HTTP_201_CREATED,
    response_model=ProductRead,
    responses=error_responses(400),
)
async def create_product(
    data: ProductCreate, products: Products, request: Request, response: Response
) -> Product:
    """Create a product in an existing category (422 naming `category_id` otherwise)."""
    product = await products.create(data)
    created(request, response, product.version, "get_product", product_id=product.id)
    return product


@products_router.post(
    "/bulk",
    dependencies=[ADMIN_ONLY, IDEMPOTENT],
    status_code=status.HTTP_201_CREATED,
    response_model=list[ProductRead],
    responses=error_responses(400),
)
async def create_products(
    items: Annotated[
        list[ProductCreate],
        Body(
            min_length=1,
            max_length=MAX_BULK_PRODUCTS,
            description=f"Up to {MAX_BULK_PRODUCTS} products, created together or not at all.",
        ),
    ],
    products: Products,
) -> list[Row]:
    """Create many products in one transaction: all of them, or none and a 422 naming the
    index of every item at fault. The response lists them in the order given."""
    return await products.create_many(items)


@products_router.get("/", dependencies=[PUBLIC], response_model=list[ProductRead])
async def list_products(
    products: ProductsReader, paging: PagingDep, order: ProductOrder, filters: ProductFiltersDep
) -> list[Row]:
    """Products matching every filter given, a page at a time, with their images."""
    return paging.answer(await products.page(paging.page, order, filters))


@products_router.get(
    "/{product_id:int}",
    dependencies=[PUBLIC],
    response_model=ProductRead,
    responses={**NOT_MODIFIED, **error_responses(404)},
)
async def get_product(
    product: FoundProduct, response: Response, if_none_match: IfNoneMatch = None
) -> Row | Response:
    return versioned(product, response, if_none_match)


@products_router.patch(
    "/{product_id:int}",
    dependencies=[ADMIN_ONLY],
    response_model=ProductRead,
    responses=error_responses(400, 404, 409, 412),
)
async def update_product(
    product_id: IdPath,
    data: ProductUpdate,
    products: Products,
    if_match: IfMatchDep,
    response: Response,
) -> Product:
    """Change some fields of a product; with If-Match, only if it is still at that version."""
    product = await products.update(product_id, data, if_match)
    response.headers["ETag"] = etag(product.version)
    return product


@products_router.delete(
    "/{product_id:int}",
    dependencies=[ADMIN_ONLY],
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(404, 409, 412),
)
async def delete_product(product_id: IdPath, products: Products, if_match: IfMatchDep) -> None:
    """Delete a product and its images; with If-Match, only if it is still at that version."""
    await products.delete(product_id, if_match)


@products_router.post(
    "/{product_id:int}/stock-adjustments",
    dependencies=[ADMIN_ONLY, IDEMPOTENT],
    response_model=ProductRead,
    responses=error_responses(400, 404, 409),
)
async def adjust_stock(
    product_id: IdPath, data: StockAdjustment, products: Products, response: Response
) -> Product:
    """Add or remove stock atomically; 409, changing nothing, if the stock would go below 0."""
    product = await products.adjust_stock(product_id, data.delta)
    response.headers["ETag"] = etag(product.version)
    return product


@products_router.get(
    "/{product_id:int}/images",
    dependencies=[PUBLIC],
    response_model=list[ImageRead],
    responses=error_responses(404),
)
async def list_images(product_id: IdPath, products: ProductsReader, paging: PagingDep) -> list[Row]:
    """The images of a product, oldest first."""
    return paging.answer(await products.images(product_id, paging.page, IMAGES_BY_ID))


@products_router.post(
    "/{product_id:int}/images",
    dependencies=[ADMIN_ONLY, IDEMPOTENT],
    status_code=status.HTTP_201_CREATED,
    response_model=ImageRead,
    responses=error_responses(400, 404, 409),
)
async def add_image(
    product_id: IdPath,
    data: ImageCreate,
    products: Products,
    request: Request,
    response: Response,
) -> ProductImage:
    """Add an image by its http(s) URL; a new primary image makes the previous one ordinary."""
    image = await products.add_image(product_id, data)
    created(request, response, None, "get_image", product_id=product_id, image_id=image.id)
    return image


@products_router.get(
    "/{product_id:int}/images/{image_id:int}",
    dependencies=[PUBLIC],
    response_model=ImageRead,
    responses=error_responses(404),
)
async def get_image(product_id: IdPath, image_id: IdPath, products: ProductsReader) -> Row:
    return await products.image(product_id, image_id)


@products_router.patch(
    "/{product_id:int}/images/{image_id:int}",
    dependencies=[ADMIN_ONLY],
    response_model=ImageRead,
    responses=error_responses(400, 404),
)
async def update_image(
    product_id: IdPath, image_id: IdPath, data: ImageUpdate, products: Products
) -> ProductImage:
    """Change an image; making it primary makes the previous primary image ordinary."""
    return await products.update_image(product_id, image_id, data)


@products_router.delete(
    "/{product_id:int}/images/{image_id:int}",
    dependencies=[ADMIN_ONLY],
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(404),
)
async def delete_image(product_id: IdPath, image_id: IdPath, products: Products) -> None:
    """Delete an image of a product."""
    await products.delete_image(product_id, image_id)
