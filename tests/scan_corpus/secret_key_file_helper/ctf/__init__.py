from flask import Flask


def create_app(config="ctf.config.ServerConfig"):
    app = Flask(__name__)
    app.config.from_object(config)
    return app
