from flask import Flask

from .utils import security
from .utils.security import random_key


def create_app():
    app = Flask(__name__, instance_relative_config=True)
    app.config.from_prefixed_env()
    if "SECRET_KEY" not in app.config:
        key = security.load_or_create_key(app.instance_path)
        app.config["SECRET_KEY"] = key  # expect: secret-key-per-process
    app.config["WTF_CSRF_SECRET_KEY"] = random_key()
    return app


def create_worker_app():
    app = Flask(__name__)
    app.secret_key = random_key(64)  # expect: secret-key-per-process
    return app
