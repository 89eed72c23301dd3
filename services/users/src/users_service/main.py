"""The users service application: `uvicorn users_service.main:create_app --factory`."""

from fastapi import FastAPI

from servicekit.app import create_service_app
from servicekit.auth import LocalKeys, TokenVerifier
from servicekit.metrics import metrics_of
from users_service import events
from users_service.keys import load_signing_keys
from users_service.models import IDEMPOTENCY_KEYS
from users_service.passwords import Passwords
from users_service.router import auth_router, keys_router, router
from users_service.service import LoginMetrics
from users_service.settings import UsersSettings
from users_service.tokens import AccessTokens


def create_app(settings: UsersSettings | None = None) -> FastAPI:
    """Build the users app from settings (by default, from `USERS_*` environment variables).

    Refuses to start without a signing key file outside development (users_service.keys).
    """
    settings = settings or UsersSettings()
    keys = load_signing_keys(settings)
    app = create_service_app(
        name="users",
        version="0.1.0",
        description="User accounts and identity: sign-up, logins, access and refresh tokens, "
        "the tokens' public keys, search, stats and sorted listings; the feed of users' events "
        "for other services.",
        settings=settings,
        routers=[router, auth_router, keys_router, events.router],
        # The issuer verifies with its own keys: no fetch of its own JWKS.
        token_verifier=TokenVerifier(
            LocalKeys(keys), issuer=settings.auth_issuer, audience=settings.auth_audience
        ),
        background=[events.prune_events],
        idempotency_keys=IDEMPOTENCY_KEYS,
    )
    app.state.service_token = settings.events_token.get_secret_value()
    app.state.signing_keys = keys
    app.state.passwords = Passwords(settings)
    app.state.access_tokens = AccessTokens(
        keys, settings.auth_issuer, settings.auth_audience, settings.access_token_lifetime
    )
    metrics = metrics_of(app)
    app.state.login_metrics = LoginMetrics(metrics.registry)
    metrics.report_outbox(events.events_held)
    return app
