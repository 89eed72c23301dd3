"""The rules of the catalog: unique category names, categories in use, stock, primary images."""

from collections.abc import Sequence

from sqlalchemy.exc import IntegrityError

from catalog_service.models import Category, Product, ProductImage
from catalog_service.repository import (
    CategoryRepository,
    ProductRepository,
)
from catalog_service.schemas import (
    MAX_STOCK,
    CategoryCreate,
    CategoryUpdate,
    ImageCreate,
    ImageUpdate,
    ProductCreate,
    ProductUpdate,
)
from servicekit.domain import Conflict, InvalidInput, found, not_found
from servicekit.preconditions import IfMatch
from servicekit.reads import Row

NAME_TAKEN = "a category with this name already exists"
MAX_IMAGES_PER_PRODUCT = 20


def _category_in_use(category_id: int) -> Conflict:
    return Conflict(
        f"category {category_id} still has products; move or delete them before deleting it"
    )


def _unknown_category(category_id: int) -> str:
    return f"category {category_id} does not exist"


class CategoryService:
    def __init__(self, categories: CategoryRepository, products: ProductRepository) -> None:
        self.categories = categories
        self.products = products

    async def create(self, data: CategoryCreate) -> Category:
        try:
            return await self.categories.add(Category(**data.model_dump()))
        except IntegrityError as exc:
            raise Conflict(NAME_TAKEN) from exc

    async def update(self, category_id: int, data: CategoryUpdate, if_match: IfMatch) -> Category:
        category = await self.categories.require(category_id)
        if_match.check(category.version)
        renamed = "name" in data.changes() and data.name != category.name
        for field, value in data.changes().items():
            setattr(category, field, value)
        try:
            await self.categories.flush()
        except IntegrityError as exc:
            raise Conflict(NAME_TAKEN) from exc
        if renamed:
            # Product responses show the category's name: their ETags must change with it.
            await self.products.touch_category(category_id)
        return category

    async def delete(self, category_id: int, if_match: IfMatch) -> None:
        category = await self.categories.require(category_id)
        if_match.check(category.version)
        if await self.products.any_in_category(category_id):
            raise _category_in_use(category_id)
        try:
            await self.categories.delete(category)
        except IntegrityError as exc:  # a product was added to it meanwhile
            raise _category_in_use(category_id) from exc


class ProductService:
    def __init__(self, products: ProductRepository, categories: CategoryRepository) -> None:
        self.products = products
        self.categories = categories

    async def _category(self, category_id: int) -> Category:
        category = await self.categories.get(category_id)
        if category is None:
            raise InvalidInput.at(("body", "category_id"), _unknown_category(category_id))
        return category

    async def create(self, data: ProductCreate) -> Product:
        category = await self._category(data.category_id)
        fields = data.model_dump(exclude={"category_id"})
        return await self.products.add(Product(**fields, category=category, images=[]))

    async def create_many(self, items: Sequence[ProductCreate]) -> list[Row]:
        """Create every product or none; unknown categories are named with the item's index."""
        categories = await self.categories.get_many({item.category_id for item in items})
        unknown = [
            (("body", index, "category_id"), _unknown_category(item.category_id))
            for index, item in enumerate(items)
            if item.category_id not in categories
        ]
        if unknown:
            raise InvalidInput(unknown)
        return await self.products.add_many([item.model_dump() for item in items], categories)

    async def update(self, product_id: int, data: ProductUpdate, if_match: IfMatch) -> Product:
        product = await self.products.shown(product_id)
        if_match.check(product.version)
        changes = data.changes()
        if "category_id" in changes:
            product.category = await self._category(changes.pop("category_id"))
        for field, value in changes.items():
            setattr(product, field, value)
        await self.products.flush()
        return product

    async def delete(self, product_id: int, if_match: IfMatch) -> None:
        product = await self.products.require(product_id)
        if_match.check(product.version)
        await self.products.delete(product)

    async def adjust_stock(self, product_id: int, delta: int) -> Product:
        """Add `delta` units to the stock atomically; 409 if it would leave 0..MAX_STOCK."""
        product = await self.products.adjust_stock(product_id, delta, MAX_STOCK)
        if product is not None:
            return product
        stock = found(await self.products.stock_of(product_id), "product", product_id)
        if stock + delta < 0:
            raise Conflict(
                f"insufficient stock: product {product_id} has {stock} in stock, "
                f"so {-delta} cannot be removed"
            )
        raise Conflict(f"stock cannot exceed {MAX_STOCK}: product {product_id} has {stock}")

    async def _lock(self, product_id: int) -> None:
        # Changes to a product's images are serialised per product, and change its ETag.
        if not await self.products.touch(product_id):
            raise not_found("product", product_id)

    async def add_image(self, product_id: int, data: ImageCreate) -> ProductImage:
        """Add an image; a new primary image replaces the previous one as primary."""
        await self._lock(product_id)
        if await self.products.image_count(product_id) >= MAX_IMAGES_PER_PRODUCT:
            raise Conflict(
                f"product {product_id} already has {MAX_IMAGES_PER_PRODUCT} images, "
                "the most it can have; delete one first"
            )
        if data.is_primary:
            await self.products.demote_primary_image(product_id)
        image = ProductImage(
            product_id=product_id, image_url=str(data.image_url), is_primary=data.is_primary
        )
        return await self.products.add_image(image)

    async def update_image(self, product_id: int, image_id: int, data: ImageUpdate) -> ProductImage:
        changes = data.changes()
        if not changes:
            return await self.products.image(product_id, image_id)
        await self._lock(product_id)
        image = await self.products.image(product_id, image_id)
        if changes.get("is_primary"):
            await self.products.demote_primary_image(product_id)
        if "image_url" in changes:
            changes["image_url"] = str(data.image_url)
        for field, value in changes.items():
            setattr(image, field, value)
        await self.products.flush()
        return image

    async def delete_image(self, product_id: int, image_id: int) -> None:
        await self._lock(product_id)
        await self.products.delete_image(await self.products.image(product_id, image_id))
