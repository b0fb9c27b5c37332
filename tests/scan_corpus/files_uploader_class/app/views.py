from flask import Blueprint, jsonify, request

from .extensions import uploader

bp = Blueprint("files", __name__)


@bp.post("/attachments")
def add_attachment():
    name = uploader.save(request.files["attachment"])
    return jsonify(name=name), 201
