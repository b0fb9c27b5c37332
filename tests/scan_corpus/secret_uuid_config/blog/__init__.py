import secrets

from flask import Flask

from .config import Config


def create_app():
    app = Flask(__name__)
    app.config.from_object(Config)
    if not app.config.get("SECRET_KEY"):
        fallback = secrets.token_hex(32)
        app.config["SECRET_KEY"] = fallback  # expect: secret-key-per-process
    return app
