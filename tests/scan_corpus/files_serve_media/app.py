"""Uploaded media served back from the folder they were written to."""

import os

from flask import Flask, abort, current_app, send_file, send_from_directory
from werkzeug.utils import safe_join

app = Flask(__name__)
app.config["UPLOAD_FOLDER"] = os.path.join(app.instance_path, "uploads")


@app.route("/media/<name>")
def media(name):
    uploads = current_app.config["UPLOAD_FOLDER"]
    if safe_join(uploads, name) is None:
        abort(404)
    return send_file(os.path.join(uploads, name))  # expect: local-file-serve


@app.route("/exports/<path:filename>")
def export(filename):
    folder = os.path.join(app.instance_path, "exports")
    return send_from_directory(folder, filename, as_attachment=True)  # expect: local-file-serve


@app.route("/favicon.ico")
def favicon():
    return send_from_directory(os.path.join(app.root_path, "static"), "favicon.ico")
