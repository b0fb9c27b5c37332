from flask import Flask
from flask_session import Session

sess = Session()


def create_app():
    app = Flask(__name__)
    app.config.from_object("shop.config.Config")
    sess.init_app(app)
    return app
