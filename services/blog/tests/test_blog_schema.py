"""Property-based tests of the blog API from its own OpenAPI schema, over real HTTP."""

from blog_service.main import create_app
from blog_service.settings import BlogSettings
from servicekit.testing.api_schema import schema_test

# `per_author` reads a batch of the named authors' posts: it needs an `author_id` and refuses
# the paging parameters (422), a rule across parameters that no JSON Schema can state. A tag
# name is at most 50 characters once normalised, and normalising can lengthen it ("ß" folds to
# "ss"): a limit no JSON Schema can state either, so creating or changing a post may refuse
# schema-valid tags with 422. Those operations may refuse schema-valid data; every check runs on
# every one.
test_no_server_errors_and_responses_match_the_schema = schema_test(
    create_app(BlogSettings()),
    rejects_schema_valid_data=["GET /posts/", "POST /posts/", "PATCH /posts/{post_id}"],
)
