from flask import Flask

from .extensions import limiter


class Config:
    RATELIMIT_HEADERS_ENABLED = True


def create_app(config=Config):
    app = Flask(__name__)
    app.config.from_object(config)
    limiter.init_app(app)

    @app.post("/login")
    @limiter.limit("5 per minute")
    def login():
        return "ok"

    return app
