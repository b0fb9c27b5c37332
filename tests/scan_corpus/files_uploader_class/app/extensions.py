"""An uploader object configured with the app, written with open() and copyfileobj."""

import os
import shutil

from werkzeug.utils import secure_filename


class Uploader:
    def __init__(self, app=None):
        self.folder = None
        if app is not None:
            self.init_app(app)

    def init_app(self, app):
        self.folder = app.config["UPLOAD_FOLDER"]

    def path_for(self, name):
        return os.path.join(self.folder, secure_filename(name))

    def save(self, upload, name=None):
        path = self.path_for(name or upload.filename)
        with open(path, "wb") as out:  # expect: local-file-write
            shutil.copyfileobj(upload.stream, out)
        return os.path.basename(path)


uploader = Uploader()
