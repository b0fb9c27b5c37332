import os

from flask import Blueprint, redirect, request

from .extensions import uploader

bp = Blueprint("media", __name__)


@bp.post("/media")
def upload():
    upload = request.files["file"]
    key = uploader.save(upload, os.path.join("media", upload.filename))
    return {"key": key}


@bp.get("/media/<path:key>")
def download(key):
    return redirect(uploader.url(key))
