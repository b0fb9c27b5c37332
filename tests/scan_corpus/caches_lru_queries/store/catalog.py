"""Memoised look-ups: the memo lives in one process and serves stale rows after a write."""

import functools
from functools import lru_cache

from flask import Blueprint, g, jsonify, request
from flask_login import current_user

from .models import Product

bp = Blueprint("catalog", __name__)


@lru_cache(maxsize=256)  # expect: function-cache
def product_price(product_id):
    return Product.query.get(product_id).price


@lru_cache  # expect: function-cache
def user_currency():
    return current_user.currency


def locale():
    return request.accept_languages.best_match(["en", "de"]) or g.get("locale")


@functools.cache  # expect: function-cache
def greeting():
    return {"en": "Hello", "de": "Hallo"}[locale()]


@lru_cache(maxsize=1024)
def slugify(text):
    return text.lower().replace(" ", "-")


@bp.route("/products/<int:product_id>")
def product(product_id):
    return jsonify(price=product_price(product_id), currency=user_currency(),
                   hello=greeting(), slug=slugify("a b"))
