from flask import Blueprint, request

from .storage import get_storage

bp = Blueprint("media", __name__)


@bp.post("/media")
def upload_media():
    upload = request.files["file"]
    return {"name": get_storage().save(upload, upload.filename)}


@bp.put("/media/<name>")
def replace_media(name):
    storage = get_storage()
    storage.write_stream(request.stream, name)
    return "", 204
