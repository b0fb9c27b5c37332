"""cachelib (and werkzeug's old contrib cache) objects kept in the web process or on disk."""

from cachelib import FileSystemCache, SimpleCache
from flask import Flask, jsonify

app = Flask(__name__)
rates = SimpleCache(default_timeout=600)  # expect: process-cache
thumbnails = FileSystemCache("/var/cache/app")  # expect: process-cache


def fetch_rates():
    return {"EUR": 1.0}


@app.route("/rates")
def get_rates():
    data = rates.get("rates")
    if data is None:
        data = fetch_rates()
        rates.set("rates", data)
    return jsonify(data)
