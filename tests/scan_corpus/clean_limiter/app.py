import os

from flask import Flask
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address


class Config:
    REDIS_URL = os.environ.get("REDIS_URL", "redis://localhost:6379/0")


class TestingConfig(Config):
    TESTING = True
    RATELIMIT_STORAGE_URI = "memory://"


def create_app(config=Config):
    app = Flask(__name__)
    app.config.from_object(config)
    limiter = Limiter(get_remote_address, app=app, storage_uri=app.config["REDIS_URL"])

    @app.post("/login")
    @limiter.limit("5 per minute")
    def login():
        return "ok"

    return app


def create_test_app():
    app = Flask(__name__)
    Limiter(get_remote_address, app=app, storage_uri="memory://")
    return app
