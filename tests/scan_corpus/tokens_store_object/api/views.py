from flask import Blueprint, abort, jsonify, request
from flask.views import MethodView

from .sessions import registry

bp = Blueprint("api", __name__, url_prefix="/api")


class Login(MethodView):
    def post(self):
        return jsonify(key=registry.open(request.json["user_id"]))

    def delete(self):
        registry.close(request.headers.get("X-Session-Key", ""))
        return "", 204


@bp.get("/me")
def me():
    user_id = registry.owner(request.headers.get("X-Session-Key", ""))
    if user_id is None:
        abort(401)
    return jsonify(user_id=user_id)


bp.add_url_rule("/login", view_func=Login.as_view("login"))
