"""Flask-Caching as its quick start shows it: SimpleCache, views cached per process."""

from flask import Flask, render_template
from flask_caching import Cache

config = {
    "DEBUG": False,
    "CACHE_TYPE": "SimpleCache",  # expect: process-cache
    "CACHE_DEFAULT_TIMEOUT": 300,
}
app = Flask(__name__)
app.config.from_mapping(config)
cache = Cache(app)

files_cache = Cache(config={
    "CACHE_TYPE": "FileSystemCache",  # expect: process-cache
    "CACHE_DIR": "/tmp/flask-cache",
})


@app.route("/")
@cache.cached(timeout=50)
def index():
    return render_template("index.html")
