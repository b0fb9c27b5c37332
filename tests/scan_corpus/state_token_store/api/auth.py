import secrets

from flask import Blueprint, abort, jsonify, request

from .. import store
from ..store import TOKENS

bp = Blueprint("api_auth", __name__, url_prefix="/api")


@bp.post("/tokens")
def issue_token():
    user_id = request.json["user_id"]
    token = secrets.token_urlsafe(32)
    TOKENS[token] = user_id  # expect: token-store
    return jsonify(token=token)


@bp.delete("/tokens/<token>")
def revoke_token(token):
    if token not in TOKENS:
        abort(404)
    store.TOKENS.pop(token)  # expect: token-store
    return "", 204
