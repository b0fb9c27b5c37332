"""The photos: list mine, upload one with a caption, view one."""

from __future__ import annotations

import uuid

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import func, insert, select
from werkzeug.utils import secure_filename

from . import storage
from .db import conn, tables
from .extensions import cache

bp = Blueprint("photos", __name__)
# Only image types are served, each with its own content type (never text/html).
TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
         ".gif": "image/gif", ".webp": "image/webp"}


@cache.memoize()
def photo_count(user_id: int) -> int:
    photos = tables().photos
    return conn().execute(select(func.count()).where(photos.c.user_id == user_id)).scalar_one()


@bp.get("/")
@login_required
def index():
    photos = tables().photos
    rows = conn().execute(select(photos.c.id, photos.c.caption, photos.c.filename)
                          .where(photos.c.user_id == current_user.id)
                          .order_by(photos.c.id.desc())).all()
    return render_template("index.html", photos=rows, count=photo_count(current_user.id))


@bp.post("/photos")
@login_required
def upload():
    file = request.files.get("photo")
    filename = secure_filename(file.filename or "") if file else ""
    extension = ("." + filename.rsplit(".", 1)[-1].lower()) if "." in filename else ""
    if extension not in TYPES:
        flash("Choose a photo: " + ", ".join(sorted(TYPES)) + ".")
        return redirect(url_for("photos.index"))
    name = f"{current_user.id}/{uuid.uuid4().hex}{extension}"
    location = storage.save(name, file, TYPES[extension])
    conn().execute(insert(tables().photos).values(
        user_id=current_user.id, caption=request.form.get("caption", "")[:200],
        filename=filename, location=location))
    conn().commit()
    cache.delete_memoized(photo_count, current_user.id)
    return redirect(url_for("photos.index"))


@bp.get("/photos/<int:photo_id>")
@login_required
def show(photo_id: int):
    photos = tables().photos
    row = conn().execute(select(photos.c.filename, photos.c.location).where(
        photos.c.id == photo_id, photos.c.user_id == current_user.id)).first()
    if row is None:
        abort(404)
    extension = "." + row.filename.rsplit(".", 1)[-1].lower()
    response = storage.send(row.location, TYPES.get(extension, "application/octet-stream"))
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
