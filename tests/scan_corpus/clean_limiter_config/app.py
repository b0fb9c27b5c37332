"""No storage_uri on the Limiter: Flask-Limiter reads RATELIMIT_STORAGE_URI from the config."""

import os

from flask import Flask
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

limiter = Limiter(key_func=get_remote_address)


def create_app():
    app = Flask(__name__)
    app.config["RATELIMIT_STORAGE_URI"] = os.environ["RATELIMIT_STORAGE_URI"]
    limiter.init_app(app)
    return app
