"""Chunked uploads of large files: init, put chunk n (1, 2, ...), complete; then download.

API (JSON): ``POST /uploads {"filename"}`` -> ``{"upload_id"}``;
``PUT /uploads/<id>/chunks/<n>`` with the raw bytes -> ``{"received": n}``;
``POST /uploads/<id>/complete {"chunks": N}`` -> ``{"file_id", "filename", "size"}``;
``GET /files/<file_id>`` -> the bytes.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid

from flask import Blueprint, abort, current_app, request, session
from sqlalchemy import select

from .auth import login_required, send_stored
from .db import File, get_db
from .names import clean_filename, read_body

bp = Blueprint("uploads", __name__)


def chunk_dir(upload_id: str) -> str:
    """This instance's folder for the chunks of one upload (a 404 for an unknown id)."""
    if not (len(upload_id) == 32 and all(c in "0123456789abcdef" for c in upload_id)):
        abort(404, f"No upload {upload_id!r}.")
    folder = os.path.join(current_app.config["UPLOAD_FOLDER"], "chunks", upload_id)
    if not os.path.isfile(os.path.join(folder, "upload.json")):
        abort(404, f"No upload {upload_id!r}: start one with POST /uploads.")
    return folder


def upload_state(folder: str) -> dict:
    with open(os.path.join(folder, "upload.json")) as f:
        state = json.load(f)
    if state["user_id"] != session["user_id"]:
        abort(404, "No such upload.")
    return state


def received_chunks(folder: str) -> int:
    return sum(1 for name in os.listdir(folder) if name.endswith(".part"))


def json_body() -> dict:
    """The request's JSON object: a 415 for any other content type, a 400 for bad JSON."""
    # JSON only, and so no CSRF token for the scripts that use this API: a cross-site HTML
    # form can send a urlencoded, multipart or text/plain body but never application/json,
    # and another site's script may send that only after a CORS preflight that this shop
    # never grants. The chunks come by PUT, which no form can send either.
    if not request.is_json:
        abort(415, "Send a JSON body with Content-Type: application/json.")
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        abort(400, "Send a JSON object.")
    return body


@bp.post("/uploads")
@login_required
def init_upload():
    filename = clean_filename(json_body().get("filename", ""))
    upload_id = uuid.uuid4().hex
    # Chunks wait on this host's disk: a chunk sent to another instance lands elsewhere.
    folder = os.path.join(current_app.config["UPLOAD_FOLDER"], "chunks", upload_id)
    os.makedirs(folder)
    with open(os.path.join(folder, "upload.json"), "w") as f:
        json.dump({"user_id": session["user_id"], "filename": filename}, f)
    return {"upload_id": upload_id}, 201


@bp.put("/uploads/<upload_id>/chunks/<int:number>")
@login_required
def put_chunk(upload_id: str, number: int):
    folder = chunk_dir(upload_id)
    upload_state(folder)
    expected = received_chunks(folder) + 1
    # Chunks arrive in order; re-sending one already received replaces it (a client retry).
    if not 1 <= number <= expected:
        abort(409, f"Chunk {number} is out of order: send chunk {expected} next.")
    data = read_body()  # all of it before the file is opened: a 413 leaves no part behind
    with open(os.path.join(folder, f"{number:05d}.part"), "wb") as out:
        out.write(data)
    return {"received": number}


@bp.post("/uploads/<upload_id>/complete")
@login_required
def complete_upload(upload_id: str):
    folder = chunk_dir(upload_id)
    state = upload_state(folder)
    have = received_chunks(folder)
    want = json_body().get("chunks", have)
    if not isinstance(want, int) or want < 1:
        abort(400, "Send the number of chunks as a positive whole number.")
    if have < want:
        abort(400, f"Chunk {have + 1} is missing: send it, then complete again.")
    if have > want:
        abort(400, f"Received {have} chunks but the client says {want}.")
    relative = f"files/{upload_id}/{state['filename']}"
    target = os.path.join(current_app.config["UPLOAD_FOLDER"], relative)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target, "wb") as out:
        for n in range(1, have + 1):
            with open(os.path.join(folder, f"{n:05d}.part"), "rb") as part:
                shutil.copyfileobj(part, out)
    size = os.path.getsize(target)
    db = get_db()
    db.add(File(id=upload_id, user_id=session["user_id"], filename=state["filename"],
                size=size, path=relative))
    db.commit()
    shutil.rmtree(folder)
    return {"file_id": upload_id, "filename": state["filename"], "size": size}


@bp.get("/files/<file_id>")
@login_required
def download(file_id: str):
    record = get_db().scalar(
        select(File).where(File.id == file_id, File.user_id == session["user_id"])
    )
    if record is None:
        abort(404, f"No file {file_id!r}.")
    return send_stored(record.path, record.filename)
