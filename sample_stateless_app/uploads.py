"""Chunked uploads of large files: init, put chunk n (1, 2, ...), complete; then download.

API (JSON): ``POST /uploads {"filename"}`` -> ``{"upload_id"}``;
``PUT /uploads/<id>/chunks/<n>`` with the raw bytes -> ``{"received": n}``;
``POST /uploads/<id>/complete {"chunks": N}`` -> ``{"file_id", "filename", "size"}``;
``GET /files/<file_id>`` -> the bytes.

Each upload is an S3 multipart upload (chunk n is part n; every chunk but the last must be at
least 5 MiB on AWS). Its state is in Redis, so any instance takes any chunk:
``upload:<id>`` hash {user_id, filename, key, multipart_id} and ``upload:<id>:parts`` hash
{n: "etag size"}; both expire after UPLOAD_TTL seconds of inactivity.
"""

from __future__ import annotations

import uuid

from flask import Blueprint, abort, request, session
from sqlalchemy import select

from .auth import login_required, send_stored
from .db import File, get_db
from .names import clean_filename, read_body
from .stores import bucket, redis_client, s3_client

bp = Blueprint("uploads", __name__)

UPLOAD_TTL = 24 * 3600


def upload_state(upload_id: str) -> dict[str, str]:
    """The shared state of one of this user's uploads (a 404 for an unknown id)."""
    raw = redis_client().hgetall(f"upload:{upload_id}")
    state = {k.decode(): v.decode() for k, v in raw.items()}
    if not state or state["user_id"] != str(session["user_id"]):
        abort(404, f"No upload {upload_id!r}: start one with POST /uploads.")
    return state


def received_parts(upload_id: str) -> dict[int, tuple[str, int]]:
    parts = redis_client().hgetall(f"upload:{upload_id}:parts")
    return {
        int(n): (etag, int(size))
        for n, (etag, size) in ((n, v.decode().split(" ")) for n, v in parts.items())
    }


def touch(upload_id: str) -> None:
    redis_client().expire(f"upload:{upload_id}", UPLOAD_TTL)
    redis_client().expire(f"upload:{upload_id}:parts", UPLOAD_TTL)


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
    key = f"files/{upload_id}/{filename}"
    multipart = s3_client().create_multipart_upload(Bucket=bucket(), Key=key)
    # Upload state in Redis: a chunk sent to any instance joins the same upload.
    redis_client().hset(
        f"upload:{upload_id}",
        mapping={"user_id": session["user_id"], "filename": filename, "key": key,
                 "multipart_id": multipart["UploadId"]},
    )
    touch(upload_id)
    return {"upload_id": upload_id}, 201


@bp.put("/uploads/<upload_id>/chunks/<int:number>")
@login_required
def put_chunk(upload_id: str, number: int):
    state = upload_state(upload_id)
    expected = len(received_parts(upload_id)) + 1
    # Chunks arrive in order; re-sending one already received replaces it (a client retry).
    if not 1 <= number <= expected:
        abort(409, f"Chunk {number} is out of order: send chunk {expected} next.")
    data = read_body()
    part = s3_client().upload_part(
        Bucket=bucket(), Key=state["key"], UploadId=state["multipart_id"],
        PartNumber=number, Body=data,
    )
    redis_client().hset(f"upload:{upload_id}:parts", str(number), f"{part['ETag']} {len(data)}")
    touch(upload_id)
    return {"received": number}


@bp.post("/uploads/<upload_id>/complete")
@login_required
def complete_upload(upload_id: str):
    state = upload_state(upload_id)
    parts = received_parts(upload_id)
    have = len(parts)
    want = json_body().get("chunks", have)
    if not isinstance(want, int) or want < 1:
        abort(400, "Send the number of chunks as a positive whole number.")
    if have < want:
        abort(400, f"Chunk {have + 1} is missing: send it, then complete again.")
    if have > want:
        abort(400, f"Received {have} chunks but the client says {want}.")
    s3_client().complete_multipart_upload(
        Bucket=bucket(), Key=state["key"], UploadId=state["multipart_id"],
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": parts[n][0]} for n in sorted(parts)]},
    )
    size = sum(size for _, size in parts.values())
    db = get_db()
    db.add(File(id=upload_id, user_id=session["user_id"], filename=state["filename"],
                size=size, key=state["key"]))
    db.commit()
    redis_client().delete(f"upload:{upload_id}", f"upload:{upload_id}:parts")
    return {"file_id": upload_id, "filename": state["filename"], "size": size}


@bp.get("/files/<file_id>")
@login_required
def download(file_id: str):
    record = get_db().scalar(
        select(File).where(File.id == file_id, File.user_id == session["user_id"])
    )
    if record is None:
        abort(404, f"No file {file_id!r}.")
    return send_stored(record.key, record.filename)
