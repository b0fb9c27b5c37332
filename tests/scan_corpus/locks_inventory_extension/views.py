from flask import Blueprint, abort, request
from flask.views import MethodView

from .inventory import inventory

bp = Blueprint("orders", __name__)


class Reservation(MethodView):
    def post(self, sku):
        if not inventory.reserve(sku, int(request.form["count"])):
            abort(409)
        return "", 201


bp.add_url_rule("/items/<sku>/reserve", view_func=Reservation.as_view("reserve"))
