from flask import Flask

from .extensions import uploader


def create_app():
    app = Flask(__name__)
    app.config["UPLOAD_FOLDER"] = app.instance_path
    uploader.init_app(app)
    from .views import bp

    app.register_blueprint(bp)
    return app
