"""SQL for the catalog: every query the service runs lives here."""

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import exists, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.attributes import set_committed_value

from catalog_service.models import Category, Product, ProductImage
from servicekit.pagination import Page, PageRequest, SortOrder, paginate

# What a product response shows, loaded with one query per relation for a whole page.
PRODUCT_RELATIONS = (selectinload(Product.category), selectinload(Product.images))


@dataclass(frozen=True)
class ProductFilters:
    """The filters of a product list; None means "not filtered"."""

    category_id: int | None = None
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    is_active: bool | None = None
    name_contains: str | None = None


class CategoryRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, category_id: int) -> Category | None:
        return await self.session.get(Category, category_id)

    async def get_many(self, category_ids: Collection[int]) -> dict[int, Category]:
        """The categories among `category_ids` that exist, by id, in one query."""
        categories = await self.session.scalars(
            select(Category).where(Category.id.in_(category_ids))
        )
        return {category.id: category for category in categories}

    async def page(self, page: PageRequest, order: SortOrder) -> Page[Category]:
        return await paginate(self.session, select(Category), order, page)

    async def add(self, category: Category) -> Category:
        """Insert a category now, so a conflicting name surfaces here rather than at commit."""
        self.session.add(category)
        await self.session.flush()
        return category

    async def flush(self) -> None:
        await self.session.flush()

    async def delete(self, category: Category) -> None:
        await self.session.delete(category)
        await self.session.flush()


class ProductRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, product_id: int) -> Product | None:
        """A product with its category and images."""
        return await self.session.scalar(
            select(Product).where(Product.id == product_id).options(*PRODUCT_RELATIONS)
        )

    async def get_bare(self, product_id: int) -> Product | None:
        """A product without its relations, for changes that do not show it."""
        return await self.session.get(Product, product_id)

    async def page(
        self, page: PageRequest, order: SortOrder, filters: ProductFilters
    ) -> Page[Product]:
        """One page of products matching every filter given, in `order`, with their relations."""
        statement = select(Product).options(*PRODUCT_RELATIONS)
        if filters.category_id is not None:
            statement = statement.where(Product.category_id == filters.category_id)
        if filters.min_price is not None:
            statement = statement.where(Product.price >= filters.min_price)
        if filters.max_price is not None:
            statement = statement.where(Product.price <= filters.max_price)
        if filters.is_active is not None:
            statement = statement.where(Product.is_active.is_(filters.is_active))
        if filters.name_contains is not None:
            statement = statement.where(
                Product.name.icontains(filters.name_contains, autoescape=True)
            )
        return await paginate(self.session, statement, order, page)

    async def any_in_category(self, category_id: int) -> bool:
        return bool(
            await self.session.scalar(select(exists().where(Product.category_id == category_id)))
        )

    async def add(self, product: Product) -> Product:
        self.session.add(product)
        await self.session.flush()
        return product

    async def add_many(
        self, rows: Sequence[dict[str, Any]], categories: dict[int, Category]
    ) -> list[Product]:
        """Insert products in batched multi-row INSERTs (insertmanyvalues), not one per row.

        Returned in the order of `rows`. Postgres does not promise RETURNING rows in VALUES
        order, so there SQLAlchemy correlates each row with its parameter set; SQLite has no
        batched form of that, but its writer holds the database lock for the whole statement,
        so ids follow the rows and sorting by id restores their order.
        """
        on_postgres = self.session.get_bind().dialect.name == "postgresql"
        statement = insert(Product).returning(Product, sort_by_parameter_order=on_postgres)
        products = list(await self.session.scalars(statement, rows))
        if not on_postgres:
            products.sort(key=lambda product: product.id)
        for product in products:
            # New products have no images, and their categories are already loaded.
            set_committed_value(product, "category", categories[product.category_id])
            set_committed_value(product, "images", [])
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

    async def flush(self) -> None:
        await self.session.flush()

    async def delete(self, product: Product) -> None:
        await self.session.delete(product)
        await self.session.flush()

    async def image(self, product_id: int, image_id: int) -> ProductImage | None:
        return await self.session.scalar(
            select(ProductImage).where(
                ProductImage.id == image_id, ProductImage.product_id == product_id
            )
        )

    async def images(
        self, product_id: int, page: PageRequest, order: SortOrder
    ) -> Page[ProductImage]:
        statement = select(ProductImage).where(ProductImage.product_id == product_id)
        return await paginate(self.session, statement, order, page)

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
