"""Integration keys kept on the app object, filled by an admin view: no name says token."""

import secrets

from flask import Flask, abort, current_app, jsonify, request


def create_app():
    app = Flask(__name__)
    app.integrations = {}

    @app.post("/admin/integrations")
    def add_integration():
        secret = secrets.token_urlsafe(24)
        current_app.integrations[secret] = request.json["partner"]  # expect: token-store
        return jsonify(secret=secret), 201

    @app.get("/partner/orders")
    def partner_orders():
        partner = current_app.integrations.get(request.headers.get("Authorization", ""))
        if partner is None:
            abort(401)
        return jsonify(partner=partner, orders=[])

    return app
