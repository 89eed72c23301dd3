"""The behaviour every service promises (servicekit.testing.contracts), on the users service."""

from servicekit.testing.contracts import *  # noqa: F403 - every contract is a test of this suite

# Requests answered from the database (method, path, JSON body): 503 while it is down.
NEED_THE_DATABASE = [
    ("POST", "/users/", {"email": "a@example.com", "name": "A", "password": "long enough"}),
    ("DELETE", "/users/1", None),
    ("GET", "/users/stats", None),
]
# Requests about a resource that does not exist (method, path, JSON body, the 404's detail).
MISSING = [
    ("GET", "/users/999", None, "user 999 not found"),
]
# A method each resource does not support, and the Allow header of its 405.
UNSUPPORTED_METHODS = [
    ("PUT", "/users/1", "GET, HEAD, PATCH, DELETE"),
    ("PATCH", "/users/stats", "GET, HEAD"),
    ("DELETE", "/users/", "GET, HEAD, POST"),
]
