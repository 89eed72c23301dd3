"""The blog tables: posts, their tags and comments.

`author_id` names a user of the users service, whose table lives in another database: it is
an id, not a foreign key. `authors` is what blog knows of those users: whether each was deleted
(from users' user.deleted events), and a row to lock so that no post or comment is created for
an author while, or after, their content is erased.
"""

from datetime import datetime

from sqlalchemy import Column, ForeignKey, Index, String, Table, Text, false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from servicekit.database import (
    NEVER_REUSE_IDS,
    UTCDateTime,
    Versioned,
    created_at_column,
    make_metadata,
    substring_search_index,
)
from servicekit.events import consumer_tables
from servicekit.idempotency import idempotency_keys_table

TITLE_MAX_LENGTH = 200
TAG_NAME_MAX_LENGTH = 50


class Base(DeclarativeBase):
    metadata = make_metadata()


post_tags = Table(
    "post_tags",
    Base.metadata,
    Column("post_id", ForeignKey("posts.id", ondelete="CASCADE"), primary_key=True),
    Column("tag_id", ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True),
    # The post's created_at, copied by triggers (see the migration that adds it), so that a
    # tag's posts come in order of creation from the index below, a page at a time, however
    # many posts have the tag: the tag filter reads the links, not the posts newest first.
    Column("created_at", UTCDateTime),
    # The primary key serves lookups by post; this one serves the tag filter and recounts.
    Index("ix_post_tags_tag_id_created_at_post_id", "tag_id", "created_at", "post_id"),
)


class Tag(Base):
    __tablename__ = "tags"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Stored normalised (see schemas.normalise_tag_name), so equal names are one row.
    name: Mapped[str] = mapped_column(String(TAG_NAME_MAX_LENGTH), unique=True)
    # How many posts have the tag. Triggers on post_tags keep it (see the migration that adds
    # it), so that listing tags by use reads the tags, not every link of every post.
    post_count: Mapped[int] = mapped_column(default=0, server_default="0")

    __table_args__ = (NEVER_REUSE_IDS,)


class Post(Versioned, Base):
    __tablename__ = "posts"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(TITLE_MAX_LENGTH))
    content: Mapped[str] = mapped_column(Text)
    author_id: Mapped[int] = mapped_column()
    published: Mapped[bool] = mapped_column(default=False, server_default=false())

    # lazy="raise": every query says what it loads, so a forgotten eager load fails loudly
    # instead of becoming one query per post. passive_deletes leaves the rows of a deleted
    # post to the database's ON DELETE CASCADE, without loading them first.
    tags: Mapped[list[Tag]] = relationship(
        secondary=post_tags, order_by=Tag.name, lazy="raise", passive_deletes=True
    )
    comments: Mapped[list["Comment"]] = relationship(
        cascade="all, delete-orphan", lazy="raise", passive_deletes=True
    )

    __table_args__ = (
        Index("ix_posts_author_id_created_at_id", "author_id", "created_at", "id"),
        Index("ix_posts_created_at_id", "created_at", "id"),
        Index("ix_posts_updated_at_id", "updated_at", "id"),
        Index("ix_posts_title_id", "title", "id"),
        # ?q= matches a substring of the title or the content, in any letter case.
        substring_search_index("ix_posts_title_trgm", "title"),
        substring_search_index("ix_posts_content_trgm", "content"),
        NEVER_REUSE_IDS,
    )


class Comment(Base):
    __tablename__ = "comments"

    id: Mapped[int] = mapped_column(primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"))
    author_id: Mapped[int] = mapped_column()
    content: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = created_at_column()

    __table_args__ = (
        Index("ix_comments_post_id_created_at_id", post_id, created_at, id),
        Index("ix_comments_author_id", author_id),
        NEVER_REUSE_IDS,
    )


class Author(Base):
    """A user who has written here (or been deleted); created at their first post or comment."""

    __tablename__ = "authors"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    # Set by the user.deleted event: from then on nothing can be written as this author.
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


# Where blog is in users' event feed, and the events it could not apply (servicekit.events).
EVENT_CURSORS, PARKED_EVENTS = consumer_tables(Base.metadata)


# The Idempotency-Keys of creates and their first answers (servicekit.idempotency).
IDEMPOTENCY_KEYS = idempotency_keys_table(Base.metadata)
