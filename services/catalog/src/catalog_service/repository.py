"""SQL for the catalog: every query the service runs lives here."""

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, String, bindparam, exists, func, select, update
from sqlalchemy.orm import selectinload

from catalog_service.models import Category, Product, ProductImage
from servicekit.domain import found
from servicekit.keyset import Page, SortOrder, fetch_page
from servicekit.pagination import PageRequest
from servicekit.reads import LIKE_ESCAPE, Criteria, Row, escape_like, one_of
from servicekit.repository import Repository, ResourceReads
from servicekit.writes import insert_many

# What a product response shows, loaded with one query per relation for a whole page.
PRODUCT_RELATIONS = (selectinload(Product.category), selectinload(Product.images))


PRODUCTS = Product.__table__
CATEGORIES = Category.__table__
IMAGES = ProductImage.__table__
# A product row as responses show it: its columns and its category's name.
_PRODUCT_ROWS = select(*PRODUCTS.c, CATEGORIES.c.name.label("category_name")).join(
    CATEGORIES, CATEGORIES.c.id == PRODUCTS.c.category_id
)
_PRODUCT_BY_ID = _PRODUCT_ROWS.where(PRODUCTS.c.id == bindparam("product_id"))
_CATEGORY_BY_ID = select(*CATEGORIES.c).where(CATEGORIES.c.id == bindparam("category_id"))
_CATEGORY_EXISTS = select(CATEGORIES.c.id).where(CATEGORIES.c.id == bindparam("category_id"))
_CATEGORIES = select(*CATEGORIES.c)
_PRODUCT_EXISTS = select(PRODUCTS.c.id).where(PRODUCTS.c.id == bindparam("product_id"))
_IMAGES_OF_PRODUCT = select(*IMAGES.c).where(IMAGES.c.product_id == bindparam("product_id"))
_IMAGE_OF_PRODUCT = _IMAGES_OF_PRODUCT.where(IMAGES.c.id == bindparam("image_id"))
_IMAGES_OF_PRODUCTS = (
    select(*IMAGES.c)
    .where(one_of(IMAGES.c.product_id, "product_ids"))
    .order_by(IMAGES.c.product_id, IMAGES.c.id)
)


@dataclass(frozen=True)
class ProductFilters:
    """The filters of a product list; None means "not filtered"."""

    category_id: int | None = None
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    is_active: bool | None = None
    name_contains: str | None = None

    def products(self) -> tuple[Select[Any], dict[str, Any]]:
        """The statement for the products passing this filter, and its parameters."""
        return _LISTS.select(
            category_id=self.category_id,
            min_price=self.min_price,
            max_price=self.max_price,
            is_active=self.is_active,
            name=None if self.name_contains is None else escape_like(self.name_contains),
        )


# The lists' optional filters, each a statement compiled once (see servicekit.reads).
_LISTS = Criteria(
    _PRODUCT_ROWS,
    category_id=PRODUCTS.c.category_id == bindparam("category_id"),
    min_price=PRODUCTS.c.price >= bindparam("min_price"),
    max_price=PRODUCTS.c.price <= bindparam("max_price"),
    is_active=PRODUCTS.c.is_active == bindparam("is_active"),
    name=PRODUCTS.c.name.icontains(bindparam("name", type_=String), escape=LIKE_ESCAPE),
)


class ProductReads(ResourceReads):
    """Queries that only read products: rows as dicts, as product responses show them."""

    noun = "product"

    async def get(self, product_id: int) -> Row | None:
        """A product with its category and images."""
        product = await self.database.fetch_one(_PRODUCT_BY_ID, {"product_id": product_id})
        return (await self._shown([product]))[0] if product is not None else None

    async def page(self, page: PageRequest, order: SortOrder, filters: ProductFilters) -> Page[Row]:
        """One page of products matching every filter given, in `order`."""
        statement, parameters = filters.products()
        result = await fetch_page(self.database, statement, order, page, parameters)
        return Page(await self._shown(result.items), result.next_cursor)

    async def of_category(self, category_id: int, page: PageRequest, order: SortOrder) -> Page[Row]:
        """One page of a category's products; NotFound if there is no such category."""
        category = await self.database.fetch_one(_CATEGORY_EXISTS, {"category_id": category_id})
        found(category, "category", category_id)
        return await self.page(page, order, ProductFilters(category_id=category_id))

    async def images(self, product_id: int, page: PageRequest, order: SortOrder) -> Page[Row]:
        """One page of a product's images in `order`; NotFound if there is no such product."""
        parameters = {"product_id": product_id}
        found(await self.database.fetch_one(_PRODUCT_EXISTS, parameters), self.noun, product_id)
        return await fetch_page(self.database, _IMAGES_OF_PRODUCT, order, page, parameters)

    async def image(self, product_id: int, image_id: int) -> Row:
        """An image of a product; NotFound if the product has no such image."""
        parameters = {"product_id": product_id, "image_id": image_id}
        image = await self.database.fetch_one(_IMAGE_OF_PRODUCT, parameters)
        return found(image, "image", f"{image_id} of product {product_id}")

    async def _shown(self, products: list[Row]) -> list[Row]:
        """The products with their category and images: one more query for all of them."""
        images = await self.database.fetch_grouped(
            _IMAGES_OF_PRODUCTS,
            "product_ids",
            (product["id"] for product in products),
            by="product_id",
        )
        for product in products:
            product["category"] = {
                "id": product["category_id"],
                "name": product.pop("category_name"),
            }
            product["images"] = images[product["id"]]
        return products


class CategoryReads(ResourceReads):
    """Queries that only read categories: rows as dicts."""

    noun = "category"

    async def get(self, category_id: int) -> Row | None:
        return await self.database.fetch_one(_CATEGORY_BY_ID, {"category_id": category_id})

    async def page(self, page: PageRequest, order: SortOrder) -> Page[Row]:
        return await fetch_page(self.database, _CATEGORIES, order, page)


class CategoryRepository(Repository[Category]):
    model = Category
    noun = "category"

    async def get_many(self, category_ids: Collection[int]) -> dict[int, Category]:
        """The categories among `category_ids` that exist, by id, in one query."""
        categories = await self.session.scalars(
            select(Category).where(Category.id.in_(category_ids))
        )
        return {category.id: category for category in categories}


class ProductRepository(Repository[Product]):
    model = Product
    noun = "product"

    async def shown(self, product_id: int) -> Product:
        """A product with its category and images, as responses show it; NotFound if none."""
        product = await self.session.scalar(
            select(Product).where(Product.id == product_id).options(*PRODUCT_RELATIONS)
        )
        return found(product, self.noun, product_id)

    async def any_in_category(self, category_id: int) -> bool:
        return bool(
            await self.session.scalar(select(exists().where(Product.category_id == category_id)))
        )

    async def add_many(
        self, rows: Sequence[dict[str, Any]], categories: dict[int, Category]
    ) -> list[Row]:
        """Insert products in one statement (see servicekit.writes), in order, as rows."""
        products = await insert_many(self.session, Product, rows)
        for product in products:
            # New products have no images, and their categories are already loaded.
            category = categories[product["category_id"]]
            product["category"] = {"id": category.id, "name": category.name}
            product["images"] = []
        return products

    async def adjust_stock(self, product_id: int, delta: int, maximum: int) -> Product | None:
        """Add `delta` to the stock in one statement, unless the result leaves 0..maximum.

        The database applies concurrent adjustments one after the other, each to the stock
        the previous one left, so stock is never oversold. None when nothing was changed.
        """
        new_stock = Product.stock_quantity + delta
        statement = (
            update(Product)
            .where(Product.id == product_id, new_stock >= 0, new_stock <= maximum)
            .values(stock_quantity=new_stock, version=Product.version + 1)
            .returning(Product)
            .options(*PRODUCT_RELATIONS)
            .execution_options(synchronize_session=False, populate_existing=True)
        )
        product: Product | None = await self.session.scalar(statement)
        return product

    async def stock_of(self, product_id: int) -> int | None:
        stock: int | None = await self.session.scalar(
            select(Product.stock_quantity).where(Product.id == product_id)
        )
        return stock

    async def touch(self, product_id: int) -> bool:
        """Mark a product changed (new version and updated_at) and lock it until commit.

        False if there is no such product.
        """
        touched = await self.session.scalar(
            update(Product)
            .where(Product.id == product_id)
            .values(version=Product.version + 1)
            .returning(Product.id)
            .execution_options(synchronize_session=False)
        )
        return touched is not None

    async def touch_category(self, category_id: int) -> None:
        """New versions (and updated_at) for the products of a category: they show its name."""
        await self.session.execute(
            update(Product)
            .where(Product.category_id == category_id)
            .values(version=Product.version + 1)
            .execution_options(synchronize_session=False)
        )

    async def image(self, product_id: int, image_id: int) -> ProductImage:
        """An image of a product; NotFound if the product has no such image."""
        image = await self.session.scalar(
            select(ProductImage).where(
                ProductImage.id == image_id, ProductImage.product_id == product_id
            )
        )
        return found(image, "image", f"{image_id} of product {product_id}")

    async def image_count(self, product_id: int) -> int:
        statement = select(func.count()).where(ProductImage.product_id == product_id)
        return await self.session.scalar(statement) or 0

    async def demote_primary_image(self, product_id: int) -> None:
        """Make the product's primary image, if any, an ordinary one."""
        await self.session.execute(
            update(ProductImage)
            .where(ProductImage.product_id == product_id, ProductImage.is_primary.is_(True))
            .values(is_primary=False)
            .execution_options(synchronize_session="evaluate")
        )

    async def add_image(self, image: ProductImage) -> ProductImage:
        self.session.add(image)
        await self.session.flush()
        return image

    async def delete_image(self, image: ProductImage) -> None:
        await self.session.delete(image)
        await self.session.flush()
