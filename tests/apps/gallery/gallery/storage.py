"""Where photo bytes live: files under UPLOAD_FOLDER (before) or objects in PHOTO_BUCKET
(after), chosen by configuration.

``save`` returns the photo's location (a path relative to the folder, or an object key) and
``send`` answers a request with the bytes at a location.
"""

from __future__ import annotations

import os

from flask import Flask, Response, current_app, send_from_directory
from werkzeug.datastructures import FileStorage


def init_app(app: Flask) -> None:
    if app.config["PHOTO_BUCKET"]:
        import boto3
        from botocore.config import Config

        # S3_ENDPOINT_URL: any S3 endpoint (None: AWS); credentials where boto3 always looks.
        app.extensions["gallery.s3"] = boto3.session.Session().client(
            "s3", endpoint_url=app.config["S3_ENDPOINT_URL"] or None,
            config=Config(s3={"addressing_style": "path"}, connect_timeout=3, read_timeout=30))
    else:
        os.makedirs(app.config["UPLOAD_FOLDER"], exist_ok=True)


def save(name: str, file: FileStorage, content_type: str) -> str:
    config = current_app.config
    if config["PHOTO_BUCKET"]:
        key = "/".join(p for p in (config["PHOTO_PREFIX"].strip("/"), name) if p)
        current_app.extensions["gallery.s3"].upload_fileobj(
            file.stream, config["PHOTO_BUCKET"], key, ExtraArgs={"ContentType": content_type})
        return key
    path = os.path.join(config["UPLOAD_FOLDER"], name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    file.save(path)
    return name


def send(location: str, content_type: str) -> Response:
    config = current_app.config
    if config["PHOTO_BUCKET"]:
        found = current_app.extensions["gallery.s3"].get_object(
            Bucket=config["PHOTO_BUCKET"], Key=location)
        return Response(found["Body"].iter_chunks(1 << 16), mimetype=content_type,
                        headers={"Content-Length": str(found["ContentLength"])})
    return send_from_directory(config["UPLOAD_FOLDER"], location, mimetype=content_type)
