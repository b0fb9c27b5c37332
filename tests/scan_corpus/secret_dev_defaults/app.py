"""Hard-coded fallbacks from tutorials: an instance started without the real key uses them."""

import os

from flask import Flask


class Config:
    SECRET_KEY = os.environ.get("SECRET_KEY") or "you-will-never-guess"  # expect: secret-key-dev


class LegacyConfig:
    SECRET_KEY = os.environ.get("SECRET_KEY") or "hard to guess string"  # expect: secret-key-dev


def create_app(test_config=None):
    app = Flask(__name__, instance_relative_config=True)
    app.config.from_mapping(SECRET_KEY="dev")  # expect: secret-key-dev
    if test_config is None:
        app.config.from_pyfile("config.py", silent=True)
    else:
        app.config.from_mapping(test_config)
    return app


admin = Flask("admin")
admin.secret_key = os.getenv("ADMIN_SECRET", "change-me")  # expect: secret-key-dev
