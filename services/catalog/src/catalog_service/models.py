"""The catalog tables: categories, products and product images, and the keys of creates."""

from datetime import datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, ForeignKey, Index, Numeric, String, false, func, text, true
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from servicekit.database import (
    NEVER_REUSE_IDS,
    Versioned,
    created_at_column,
    make_metadata,
    substring_search_index,
)
from servicekit.idempotency import idempotency_keys_table


class Base(DeclarativeBase):
    metadata = make_metadata()


class Category(Versioned, Base):
    __tablename__ = "categories"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str | None] = mapped_column(String(1000))

    __table_args__ = (
        # "Books" and "books" would be one category to a shopper; the database decides races.
        Index("uq_categories_name_lower", func.lower(name), unique=True),
        Index("ix_categories_name_id", name, id),
        NEVER_REUSE_IDS,
    )


class Product(Versioned, Base):
    __tablename__ = "products"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(String(5000))
    price: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    # RESTRICT: a category with products cannot be deleted, whatever the application checks.
    category_id: Mapped[int] = mapped_column(ForeignKey("categories.id", ondelete="RESTRICT"))
    stock_quantity: Mapped[int] = mapped_column(default=0, server_default="0")
    is_active: Mapped[bool] = mapped_column(default=True, server_default=true())

    # lazy="raise": every query states what it loads, so a forgotten eager load fails loudly
    # instead of becoming one query per product.
    category: Mapped[Category] = relationship(lazy="raise")
    images: Mapped[list["ProductImage"]] = relationship(
        lazy="raise",
        order_by="ProductImage.id",
        cascade="all, delete-orphan",
        passive_deletes=True,  # the database's ON DELETE CASCADE removes them
    )

    __table_args__ = (
        CheckConstraint("price >= 0", name="price_not_negative"),
        CheckConstraint("stock_quantity >= 0", name="stock_quantity_not_negative"),
        # One index per filter and sort the list offers; id last keeps keyset pagination exact.
        Index("ix_products_category_id_id", category_id, id),
        Index("ix_products_category_id_price_id", category_id, price, id),
        Index("ix_products_price_id", price, id),
        Index("ix_products_name_id", name, id),
        Index("ix_products_created_at_id", "created_at", id),
        # ?name= matches a substring of the name, in any letter case.
        substring_search_index("ix_products_name_trgm", "name"),
        NEVER_REUSE_IDS,
    )


class ProductImage(Base):
    __tablename__ = "product_images"

    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"))
    image_url: Mapped[str] = mapped_column(String(2048))
    is_primary: Mapped[bool] = mapped_column(default=False, server_default=false())
    created_at: Mapped[datetime] = created_at_column()

    __table_args__ = (
        Index("ix_product_images_product_id_id", product_id, id),
        # At most one primary image per product, whatever the application does.
        Index(
            "uq_product_images_primary",
            product_id,
            unique=True,
            postgresql_where=text("is_primary"),
            sqlite_where=text("is_primary"),
        ),
        NEVER_REUSE_IDS,
    )


# The Idempotency-Keys of creates and their first answers (servicekit.idempotency).
IDEMPOTENCY_KEYS = idempotency_keys_table(Base.metadata)
