"""Chunked uploads as Dropzone.js sends them: each chunk appended to a file on disk."""

import os

from flask import Flask, current_app, make_response, request
from werkzeug.utils import secure_filename

app = Flask(__name__)
app.config["UPLOAD_DIRECTORY"] = os.path.join(app.instance_path, "uploads")


@app.route("/upload", methods=["POST"])
def upload():
    file = request.files["file"]
    name = secure_filename(file.filename)
    save_path = os.path.join(current_app.config["UPLOAD_DIRECTORY"], name)
    current_chunk = int(request.form["dzchunkindex"])
    if os.path.exists(save_path) and current_chunk == 0:
        return make_response(("File already exists", 400))
    with open(save_path, "ab") as f:  # expect: local-file-write
        f.seek(int(request.form["dzchunkbyteoffset"]))
        f.write(file.stream.read())
    total_chunks = int(request.form["dztotalchunkcount"])
    if current_chunk + 1 == total_chunks:
        os.rename(save_path, save_path + ".done")  # expect: local-file-write
    return make_response(("Chunk upload successful", 200))
