"""Shapes of the composed views, as the gateway documents them.

They describe what the services return, plus what the gateway adds; the services remain the
authority on their own fields.
"""

from datetime import datetime

from servicekit.schemas import ResponseModel


class User(ResponseModel):
    """A user's public profile: composed views never show an email or an account's state."""

    id: int
    name: str
    created_at: datetime


class Post(ResponseModel):
    id: int
    title: str
    content: str
    author_id: int
    published: bool
    tags: list[str]
    created_at: datetime
    updated_at: datetime
    version: int


class UserWithPosts(User):
    posts: list[Post]
    has_more_posts: bool


class CommentWithAuthor(ResponseModel):
    id: int
    post_id: int
    author_id: int
    content: str
    created_at: datetime
    author: User | None = None


class PostWithAuthorAndComments(Post):
    author: User | None = None
    comments: list[CommentWithAuthor] | None = None
