"""What operators rely on: health probes, request ids, access logs, a clear 503, settings."""

import httpx
import pytest

from servicekit.testing.contracts import (
    test_a_204_has_no_content_type,
    test_a_declared_body_over_the_limit_is_413_unread,
    test_a_deleted_id_is_never_given_again,
    test_a_json_body_sent_as_another_media_type_is_415,
    test_a_missing_or_unsafe_request_id_is_replaced,
    test_a_request_id_is_returned_as_given,
    test_a_request_without_host_is_400,
    test_a_streamed_body_is_refused_once_it_passes_the_limit,
    test_each_request_is_logged_once_with_its_id_and_outcome,
    test_liveness_and_readiness_when_the_database_answers,
    test_location_and_link_are_relative_whatever_the_host,
    test_metrics_answer_only_the_metrics_credential,
    test_migrations_connect_with_their_own_url_else_the_services,
    test_paths_answer_with_or_without_the_trailing_slash,
    test_readiness_fails_and_liveness_holds_when_the_database_is_down,
    test_reads_are_503_without_internals_when_the_database_is_down,
    test_requests_are_counted_under_their_route_template,
    test_settings_read_the_service_prefix,
    test_settings_refuse_a_development_password_for_migrations_in_production,
    test_settings_refuse_a_development_password_in_production,
    test_the_embedded_default_is_an_sqlite_file_under_var,
    test_the_metrics_report_readiness_and_every_connection_pool,
    test_unknown_routes_use_the_error_model,
)

__all__ = [
    "test_a_204_has_no_content_type",
    "test_a_declared_body_over_the_limit_is_413_unread",
    "test_a_deleted_id_is_never_given_again",
    "test_a_json_body_sent_as_another_media_type_is_415",
    "test_a_missing_or_unsafe_request_id_is_replaced",
    "test_a_request_id_is_returned_as_given",
    "test_a_request_without_host_is_400",
    "test_a_streamed_body_is_refused_once_it_passes_the_limit",
    "test_each_request_is_logged_once_with_its_id_and_outcome",
    "test_liveness_and_readiness_when_the_database_answers",
    "test_location_and_link_are_relative_whatever_the_host",
    "test_metrics_answer_only_the_metrics_credential",
    "test_migrations_connect_with_their_own_url_else_the_services",
    "test_paths_answer_with_or_without_the_trailing_slash",
    "test_readiness_fails_and_liveness_holds_when_the_database_is_down",
    "test_reads_are_503_without_internals_when_the_database_is_down",
    "test_requests_are_counted_under_their_route_template",
    "test_settings_read_the_service_prefix",
    "test_settings_refuse_a_development_password_for_migrations_in_production",
    "test_settings_refuse_a_development_password_in_production",
    "test_the_embedded_default_is_an_sqlite_file_under_var",
    "test_the_metrics_report_readiness_and_every_connection_pool",
    "test_unknown_routes_use_the_error_model",
]

PRODUCT = {"name": "Lamp", "price": "1.00", "category_id": 1}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/categories/", {"name": "Books"}),
        ("POST", "/products/", PRODUCT),
        ("POST", "/products/bulk", [PRODUCT]),
        ("POST", "/products/1/stock-adjustments", {"delta": -1}),
        ("POST", "/products/1/images", {"image_url": "https://img.example/a.jpg"}),
        ("DELETE", "/categories/1", None),
        ("GET", "/products/?q=lamp&sort_by=price", None),
    ],
)
async def test_requests_are_503_when_the_database_is_down(
    no_database: httpx.AsyncClient, method: str, path: str, body: object
) -> None:
    response = await no_database.request(method, path, json=body)

    assert response.status_code == 503
    assert response.json() == {"detail": "database unavailable"}


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/products/1", "GET, HEAD, PATCH, DELETE"),
        ("DELETE", "/products/", "GET, HEAD, POST"),
        ("GET", "/products/1/stock-adjustments", "POST"),
        ("PUT", "/products/1/images", "GET, HEAD, POST"),
        ("POST", "/products/1/images/1", "GET, HEAD, PATCH, DELETE"),
        ("POST", "/categories/1/products", "GET, HEAD"),
    ],
)
async def test_405_lists_every_method_the_resource_supports(
    client: httpx.AsyncClient, method: str, path: str, allow: str
) -> None:
    response = await client.request(method, path)

    assert response.status_code == 405
    assert response.headers["Allow"] == allow
