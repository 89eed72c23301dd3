"""HTTP endpoints of the catalog service."""

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Path, Query, Request, Response, status

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
from catalog_service.service import (
    CategoryQueries,
    CategoryService,
    ProductQueries,
    ProductService,
)
from servicekit.auth import ADMIN_ONLY, PUBLIC
from servicekit.database import SessionDep, get_database
from servicekit.errors import error_responses, invalid_input
from servicekit.idempotency import IDEMPOTENT, IdempotentRoute
from servicekit.keyset import SortOrder
from servicekit.pagination import PageDep, set_next_link
from servicekit.preconditions import IfMatchDep, etag, not_modified
from servicekit.reads import Row
from servicekit.schemas import MAX_ID, Id, Text

categories_router = APIRouter(
    prefix="/categories", tags=["categories"], route_class=IdempotentRoute
)
products_router = APIRouter(prefix="/products", tags=["products"], route_class=IdempotentRoute)

CategoryId = Annotated[int, Path(ge=1, le=MAX_ID)]
ProductId = Annotated[int, Path(ge=1, le=MAX_ID)]
ImageId = Annotated[int, Path(ge=1, le=MAX_ID)]
IfNoneMatch = Annotated[str | None, Header(max_length=1024)]
NOT_MODIFIED: dict[int | str, dict[str, Any]] = {
    304: {"description": "Not modified (If-None-Match)"}
}
IMAGES_BY_ID = SortOrder("id", (ProductImage.id,))


async def _category_writer(session: SessionDep) -> CategoryService:
    return CategoryService(CategoryRepository(session), ProductRepository(session))


async def _category_reader(request: Request) -> CategoryQueries:
    return CategoryQueries(CategoryReads(get_database(request)))


async def _product_writer(session: SessionDep) -> ProductService:
    return ProductService(ProductRepository(session), CategoryRepository(session))


async def _product_reader(request: Request) -> ProductQueries:
    return ProductQueries(ProductReads(get_database(request)))


Categories = Annotated[CategoryService, Depends(_category_writer)]
CategoriesReader = Annotated[CategoryQueries, Depends(_category_reader)]
Products = Annotated[ProductService, Depends(_product_writer)]
ProductsReader = Annotated[ProductQueries, Depends(_product_reader)]


def _sort_order(
    model: type[Category] | type[Product], field: str, direction: SortDirection
) -> SortOrder:
    columns = (model.id,) if field == "id" else (getattr(model, field), model.id)
    return SortOrder(f"{field}:{direction}", columns, descending=direction == "desc")


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
        raise invalid_input(("query", "min_price"), "must not be greater than max_price")
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
    response.headers["Location"] = str(
        request.app.url_path_for("get_category", category_id=category.id)
    )
    response.headers["ETag"] = etag(category.version)
    return category


@categories_router.get("/", dependencies=[PUBLIC], response_model=list[CategoryRead])
async def list_categories(
    categories: CategoriesReader,
    page: PageDep,
    order: CategoryOrder,
    request: Request,
    response: Response,
) -> list[Row]:
    """Categories, a page at a time, sorted by id or name."""
    result = await categories.list(page, order)
    set_next_link(request, response, result.next_cursor)
    return result.items


@categories_router.get(
    "/{category_id:int}",
    dependencies=[PUBLIC],
    response_model=CategoryRead,
    responses={**NOT_MODIFIED, **error_responses(404)},
)
async def get_category(
    category_id: CategoryId,
    categories: CategoriesReader,
    response: Response,
    if_none_match: IfNoneMatch = None,
) -> Row | Response:
    category = await categories.get(category_id)
    if unchanged := not_modified(if_none_match, category["version"]):
        return unchanged
    response.headers["ETag"] = etag(category["version"])
    return category


@categories_router.patch(
    "/{category_id:int}",
    dependencies=[ADMIN_ONLY],
    response_model=CategoryRead,
    responses=error_responses(400, 404, 409, 412),
)
async def update_category(
    category_id: CategoryId,
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
    category_id: CategoryId, categories: Categories, if_match: IfMatchDep
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
    category_id: CategoryId,
    products: ProductsReader,
    page: PageDep,
    order: ProductOrder,
    request: Request,
    response: Response,
) -> list[Row]:
    """The products of a category, a page at a time, with their images."""
    result = await products.of_category(category_id, page, order)
    set_next_link(request, response, result.next_cursor)
    return result.items


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
    response.headers["Location"] = str(
        request.app.url_path_for("get_product", product_id=product.id)
    )
    response.headers["ETag"] = etag(product.version)
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
    products: ProductsReader,
    page: PageDep,
    order: ProductOrder,
    filters: ProductFiltersDep,
    request: Request,
    response: Response,
) -> list[Row]:
    """Products matching every filter given, a page at a time, with their images."""
    result = await products.list(page, order, filters)
    set_next_link(request, response, result.next_cursor)
    return result.items


@products_router.get(
    "/{product_id:int}",
    dependencies=[PUBLIC],
    response_model=ProductRead,
    responses={**NOT_MODIFIED, **error_responses(404)},
)
async def get_product(
    product_id: ProductId,
    products: ProductsReader,
    response: Response,
    if_none_match: IfNoneMatch = None,
) -> Row | Response:
    product = await products.get(product_id)
    if unchanged := not_modified(if_none_match, product["version"]):
        return unchanged
    response.headers["ETag"] = etag(product["version"])
    return product


@products_router.patch(
    "/{product_id:int}",
    dependencies=[ADMIN_ONLY],
    response_model=ProductRead,
    responses=error_responses(400, 404, 409, 412),
)
async def update_product(
    product_id: ProductId,
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
async def delete_product(product_id: ProductId, products: Products, if_match: IfMatchDep) -> None:
    """Delete a product and its images; with If-Match, only if it is still at that version."""
    await products.delete(product_id, if_match)


@products_router.post(
    "/{product_id:int}/stock-adjustments",
    dependencies=[ADMIN_ONLY, IDEMPOTENT],
    response_model=ProductRead,
    responses=error_responses(400, 404, 409),
)
async def adjust_stock(
    product_id: ProductId, data: StockAdjustment, products: Products, response: Response
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
async def list_images(
    product_id: ProductId,
    products: ProductsReader,
    page: PageDep,
    request: Request,
    response: Response,
) -> list[Row]:
    """The images of a product, oldest first."""
    result = await products.images(product_id, page, IMAGES_BY_ID)
    set_next_link(request, response, result.next_cursor)
    return result.items


@products_router.post(
    "/{product_id:int}/images",
    dependencies=[ADMIN_ONLY, IDEMPOTENT],
    status_code=status.HTTP_201_CREATED,
    response_model=ImageRead,
    responses=error_responses(400, 404, 409),
)
async def add_image(
    product_id: ProductId,
    data: ImageCreate,
    products: Products,
    request: Request,
    response: Response,
) -> ProductImage:
    """Add an image by its http(s) URL; a new primary image makes the previous one ordinary."""
    image = await products.add_image(product_id, data)
    response.headers["Location"] = str(
        request.app.url_path_for("get_image", product_id=product_id, image_id=image.id)
    )
    return image


@products_router.get(
    "/{product_id:int}/images/{image_id:int}",
    dependencies=[PUBLIC],
    response_model=ImageRead,
    responses=error_responses(404),
)
async def get_image(product_id: ProductId, image_id: ImageId, products: ProductsReader) -> Row:
    return await products.image(product_id, image_id)


@products_router.patch(
    "/{product_id:int}/images/{image_id:int}",
    dependencies=[ADMIN_ONLY],
    response_model=ImageRead,
    responses=error_responses(400, 404),
)
async def update_image(
    product_id: ProductId, image_id: ImageId, data: ImageUpdate, products: Products
) -> ProductImage:
    """Change an image; making it primary makes the previous primary image ordinary."""
    return await products.update_image(product_id, image_id, data)


@products_router.delete(
    "/{product_id:int}/images/{image_id:int}",
    dependencies=[ADMIN_ONLY],
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(404),
)
async def delete_image(product_id: ProductId, image_id: ImageId, products: Products) -> None:
    """Delete an image of a product."""
    await products.delete_image(product_id, image_id)
