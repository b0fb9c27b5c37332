"""The upload example of Flask's own documentation ("Uploading Files")."""

import os

from flask import Flask, flash, redirect, request, send_from_directory, url_for
from werkzeug.utils import secure_filename

UPLOAD_FOLDER = "/path/to/the/uploads"
ALLOWED_EXTENSIONS = {"txt", "pdf", "png", "jpg", "jpeg", "gif"}

app = Flask(__name__)
app.config["UPLOAD_FOLDER"] = UPLOAD_FOLDER


def allowed_file(filename):
    return "." in filename and filename.rsplit(".", 1)[1].lower() in ALLOWED_EXTENSIONS


@app.route("/", methods=["GET", "POST"])
def upload_file():
    if request.method == "POST":
        file = request.files.get("file")
        if file is None or file.filename == "":
            flash("No selected file")
            return redirect(request.url)
        if allowed_file(file.filename):
            filename = secure_filename(file.filename)
            path = os.path.join(app.config["UPLOAD_FOLDER"], filename)
            file.save(path)  # expect: local-file-write
            return redirect(url_for("download_file", name=filename))
    return "<form method=post enctype=multipart/form-data><input type=file name=file></form>"


@app.route("/uploads/<name>")
def download_file(name):
    return send_from_directory(app.config["UPLOAD_FOLDER"], name)  # expect: local-file-serve
