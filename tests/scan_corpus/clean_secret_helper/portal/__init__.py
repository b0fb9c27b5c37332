from flask import Flask

from .secrets_store import load_secret_key, new_api_token


def create_app():
    app = Flask(__name__)
    app.config["SECRET_KEY"] = load_secret_key()
    app.config["BOOTSTRAP_TOKEN"] = new_api_token()
    return app
