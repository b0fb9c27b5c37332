"""The demo shop, after: any instance serves any request; state lives in shared stores."""

from __future__ import annotations

from flask import Flask, Request, session
from flask.sessions import SessionMixin

from migrate.sessions.interface import RedisSessionInterface

from . import api, auth, db, errors, events, health, limits, shop, stores, uploads
from .config import check_required, load_config


def create_app(test_config: dict | None = None) -> Flask:
    """Build the shop; ``test_config`` overrides the environment (Flask tutorial style)."""
    app = Flask(__name__)
    app.config.from_mapping(load_config())
    if test_config:
        app.config.from_mapping(test_config)
    check_required(app.config)

    # Sessions live in Redis, shared by every instance; the cookie and serializer are unchanged.
    stores.init_app(app)
    # Flask-Session's Redis interface as migrate.sessions extends it: it keeps a Redis
    # Cluster client (Session(app) would swap it for localhost) and finds sessions migrated
    # from files.
    app.session_interface = _Sessions.from_config(app, stores.redis_client(app),
                                                  prefetch=shop.prefetch)

    @app.before_request
    def adopt_migrated_cart():
        # A session migrated from the before-shop still holds its cart: move it to Redis, once.
        if "cart" in session:
            stores.adopt_cart(session)

    db.init_app(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(shop.bp)
    app.register_blueprint(uploads.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(events.bp)
    limits.init_app(app)
    errors.init_app(app)
    app.before_request(auth.check_csrf)  # last: after errors' own checks
    return app


class _Sessions(RedisSessionInterface):
    """Sessions in Redis; while Redis is unreachable, an empty session and a marked request
    (Flask would otherwise fail before any error handler runs: a bare 500)."""

    def open_session(self, app: Flask, request: Request) -> SessionMixin | None:
        try:
            return super().open_session(app, request)
        except stores.UNAVAILABLE:
            request.environ[errors.SESSION_DOWN] = True
            return self.make_null_session(app)
