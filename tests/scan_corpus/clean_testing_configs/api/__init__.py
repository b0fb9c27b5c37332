from cachelib import SimpleCache
from flask import Flask


def create_app(test_config=None):
    app = Flask(__name__)
    if test_config is None:
        app.config.from_object("api.config.Config")
    else:
        app.config.from_mapping(test_config)
    if app.testing:
        app.config["SQLALCHEMY_DATABASE_URI"] = "sqlite://"
        app.extensions["rate_cache"] = SimpleCache()
    return app


def create_test_app():
    return create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": "sqlite://"})
