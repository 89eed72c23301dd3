"""The behaviour every service promises (servicekit.testing.contracts), on the blog service."""

from servicekit.testing.contracts import *  # noqa: F403 - every contract is a test of this suite

# Requests answered from the database (method, path, JSON body): 503 while it is down.
NEED_THE_DATABASE = [
    ("POST", "/posts/", {"title": "T", "content": "C", "author_id": 1, "tags": ["t"]}),
    ("DELETE", "/posts/?author_id=1", None),
    ("POST", "/posts/1/comments", {"author_id": 1, "content": "C"}),
    ("GET", "/tags/", None),
]
# Requests about a resource that does not exist (method, path, JSON body, the 404's detail).
MISSING = [
    ("GET", "/posts/999", None, "post 999 not found"),
    ("PATCH", "/posts/999", {"title": "Nobody's"}, "post 999 not found"),
    ("GET", "/posts/999/comments", None, "post 999 not found"),
    ("DELETE", "/comments/999", None, "comment 999 not found"),
]
# A method each resource does not support, and the Allow header of its 405.
UNSUPPORTED_METHODS = [
    ("PUT", "/posts/1", "GET, HEAD, PATCH, DELETE"),
    ("PATCH", "/posts/", "GET, HEAD, POST, DELETE"),
    ("PUT", "/posts/1/comments", "GET, HEAD, POST"),
    ("PATCH", "/comments/1", "GET, HEAD, DELETE"),
    ("POST", "/tags/", "GET, HEAD"),
]
