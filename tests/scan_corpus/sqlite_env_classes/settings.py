"""One class per environment (issue 10, item 20): testing's in-memory database is no trap,
development's file is a note, production's fallback is an error."""

import os

basedir = os.path.abspath(os.path.dirname(__file__))


class BaseConfig:
    SQLALCHEMY_TRACK_MODIFICATIONS = False


class DevelopmentConfig(BaseConfig):
    DEBUG = True
    SQLALCHEMY_DATABASE_URI = os.environ.get("DEV_DATABASE_URL") or \
        "sqlite:///" + os.path.join(basedir, "data-dev.sqlite")  # expect: sqlite-local[note]


class TestingConfig(BaseConfig):
    TESTING = True
    SQLALCHEMY_DATABASE_URI = os.environ.get("TEST_DATABASE_URL") or "sqlite://"
    WTF_CSRF_ENABLED = False


class ProductionConfig(BaseConfig):
    SQLALCHEMY_DATABASE_URI = os.environ.get("DATABASE_URL") or \
        "sqlite:///" + os.path.join(basedir, "data.sqlite")  # expect: sqlite-local


def create_app(config_name):
    from flask import Flask

    app = Flask(__name__)
    app.config.from_object({"development": DevelopmentConfig, "testing": TestingConfig,
                            "production": ProductionConfig}[config_name])
    if app.config["TESTING"]:
        app.config["SQLALCHEMY_ENGINES"] = {"default": "sqlite:///:memory:"}
    if app.debug:
        app.config["SQLALCHEMY_RECORD_QUERIES"] = True
        app.config["PROFILE_DB"] = "sqlite:///profile.db"  # expect: sqlite-local[note]
    return app
