"""Caches every instance shares (Redis), memos of pure functions and of start-up settings,
and a cache only a test run or a debug session uses."""

import os
from functools import cache, lru_cache

from cachelib import RedisCache
from flask import Flask, jsonify
from flask_caching import Cache

app = Flask(__name__)
app.config.from_mapping(CACHE_TYPE="RedisCache", CACHE_REDIS_URL=os.environ.get("REDIS_URL"))
pages = Cache(app)
tokens = RedisCache(host="redis", key_prefix="tokens:")

if app.config.get("TESTING"):
    app.config["CACHE_TYPE"] = "SimpleCache"


@cache
def settings():
    return {"currency": os.environ.get("CURRENCY", "EUR")}


@lru_cache(maxsize=128)
def slugify(text):
    return text.strip().lower().replace(" ", "-")


@app.route("/<title>")
@pages.cached(timeout=60)
def page(title):
    return jsonify(slug=slugify(title), currency=settings()["currency"])
