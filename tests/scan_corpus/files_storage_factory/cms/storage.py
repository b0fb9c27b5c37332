"""A storage backend chosen by configuration: local folder or S3 (many CMS-like apps)."""

import os
import shutil
from pathlib import Path

import boto3
from flask import current_app


class Storage:
    def __init__(self, root):
        self.root = root

    def write_stream(self, stream, name):
        target = Path(self.root) / name
        target.parent.mkdir(parents=True, exist_ok=True)  # expect: local-file-write
        with target.open("wb") as out:  # expect: local-file-write
            shutil.copyfileobj(stream, out)


class LocalStorage(Storage):
    def save(self, upload, name):
        upload.save(os.path.join(self.root, name))  # expect: local-file-write
        return name


class S3Storage:
    def __init__(self, bucket):
        self.bucket = bucket
        self.client = boto3.client("s3")

    def save(self, upload, name):
        self.client.upload_fileobj(upload.stream, self.bucket, name)
        return name

    def write_stream(self, stream, name):
        self.client.upload_fileobj(stream, self.bucket, name)


def get_storage():
    if current_app.config.get("S3_BUCKET"):
        return S3Storage(current_app.config["S3_BUCKET"])
    return LocalStorage(current_app.config["MEDIA_ROOT"])
