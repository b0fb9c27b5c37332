"""File handling that does not leave state on the host: temporary files removed in the
request, reads, static assets, uploads streamed to S3, images built in memory."""

import io
import os
import tempfile

import boto3
from flask import Flask, request, send_file, send_from_directory
from PIL import Image

app = Flask(__name__)
s3 = boto3.client("s3")


class S3Uploader:
    def __init__(self, bucket):
        self.bucket = bucket

    def save(self, upload, key):
        s3.upload_fileobj(upload.stream, self.bucket, key)
        return key


uploader = S3Uploader("media")


@app.post("/avatar")
def avatar():
    upload = request.files["avatar"]
    key = uploader.save(upload, os.path.join("avatars", upload.filename))
    thumb = io.BytesIO()
    Image.open(upload.stream).save(thumb, format="PNG")
    thumb.seek(0)
    s3.upload_fileobj(thumb, "media", key + ".thumb.png")
    return {"key": key}


@app.post("/convert")
def convert():
    fd, path = tempfile.mkstemp(suffix=".csv")
    with os.fdopen(fd, "w") as out:
        out.write(request.get_data(as_text=True))
    size = os.path.getsize(path)
    os.remove(path)
    with tempfile.TemporaryDirectory() as folder:
        with open(os.path.join(folder, "report.txt"), "w") as out:
            out.write(str(size))
    return {"size": size}


@app.get("/report")
def report():
    with open(os.path.join(app.root_path, "data", "template.csv")) as f:
        text = f.read()
    return send_file(io.BytesIO(text.encode()), download_name="report.csv")


@app.get("/assets/<path:name>")
def assets(name):
    return send_from_directory(app.static_folder, name)
