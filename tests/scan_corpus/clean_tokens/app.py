"""Token look-alikes that are not state: signed JWTs, a Redis denylist, read-only registries,
constants, per-request values, and a dict local to the view."""

import os
import secrets
from datetime import timedelta

import redis
from flask import Flask, abort, g, jsonify, request
from flask_jwt_extended import JWTManager, create_access_token, get_jwt, jwt_required

app = Flask(__name__)
app.config["JWT_SECRET_KEY"] = os.environ["JWT_SECRET_KEY"]
app.config["JWT_TOKEN_LOCATION"] = ["headers"]
ACCESS_EXPIRES = timedelta(hours=1)
jwt = JWTManager(app)
denylist = redis.Redis.from_url(os.environ["REDIS_URL"])

TOKEN_TYPES = ("access", "refresh")
TOKENS_PER_PAGE = 20
API_SCOPES = {"read": "Read your orders", "write": "Place orders"}
SERVICE_API_KEYS = {os.environ.get("PARTNER_KEY", ""): "partner"}  # from config, never changed
API_KEY_HEADERS = []
API_KEY_HEADERS.append("X-API-Key")  # import time: the same on every instance


@jwt.token_in_blocklist_loader
def check_if_token_is_revoked(jwt_header, jwt_payload):
    return denylist.get(jwt_payload["jti"]) is not None


@app.before_request
def partner_from_key():
    for header in API_KEY_HEADERS:
        g.partner = SERVICE_API_KEYS.get(request.headers.get(header, ""))
        g.token = request.headers.get("Authorization")


@app.post("/login")
def login():
    tokens = {}
    tokens["access"] = create_access_token(identity=request.json["user"])
    tokens["csrf"] = secrets.token_urlsafe(16)
    return jsonify(tokens)


@app.delete("/logout")
@jwt_required()
def logout():
    denylist.set(get_jwt()["jti"], "", ex=ACCESS_EXPIRES)
    return jsonify(msg="revoked", scopes=API_SCOPES, per_page=TOKENS_PER_PAGE)


@app.get("/partner")
def partner():
    if g.partner is None:
        abort(401)
    return jsonify(partner=g.partner, types=TOKEN_TYPES)
