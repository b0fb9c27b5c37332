"""Log in, log out, the account page and the avatar; the forms' CSRF check."""

from __future__ import annotations

import functools
import hmac
import itertools
import re
import secrets
from urllib.parse import unquote, urlsplit

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from sqlalchemy import select
from werkzeug.exceptions import HTTPException
from werkzeug.security import check_password_hash, generate_password_hash
from werkzeug.urls import iri_to_uri

from .db import Order, User, get_db
from .names import HEAD, clean_filename, served_as, stream_size, uploaded_image_type
from .stores import bucket, s3_client

bp = Blueprint("auth", __name__)

C0_AND_SPACE = "".join(map(chr, range(0x21)))


def login_required(view):
    """Send an anonymous visitor to the login page, remembering where they were going."""

    @functools.wraps(view)
    def wrapped(**kwargs):
        if "user_id" not in session:
            return redirect(url_for("auth.login", next=request.path))
        return view(**kwargs)

    return wrapped


def current_user() -> User | None:
    user_id = session.get("user_id")
    return get_db().get(User, user_id) if user_id is not None else None


@bp.app_template_global()
def csrf_token() -> str:
    """This session's CSRF token, made on first use; every form sends it back."""
    if "csrf_token" not in session:
        session["csrf_token"] = secrets.token_urlsafe(32)
    return session["csrf_token"]


def check_csrf() -> None:
    """Refuse a form post that another site's page may have made the browser send."""
    config = current_app.config
    if request.method in ("GET", "HEAD", "OPTIONS") or not config["CSRF_ENABLED"]:
        return
    if request.blueprint == "uploads":
        return  # the JSON API: a cross-site form cannot send JSON (uploads.json_body)
    if (request.blueprint == "api" and config["SESSION_COOKIE_NAME"] not in request.cookies
            and ("Authorization" in request.headers or request.is_json)):
        return  # the token API reads no cookie: a forged request carries nothing to abuse
    # Browsers send Origin with every POST (and Sec-Fetch-Site): such a request must carry
    # the token that only this site's own pages show. A script sends neither header and holds
    # no victim's cookie, so only CSRF_STRICT asks it for the token too. (A browser too old
    # to send Origin is left to SameSite=Lax, which keeps the cookie off a cross-site POST.)
    from_a_browser = "Origin" in request.headers or "Sec-Fetch-Site" in request.headers
    if not from_a_browser and not config["CSRF_STRICT"]:
        return
    sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token", "")
    expected = session.get("csrf_token", "")
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        abort(403, "This form came from another site or has expired: "
                   "reload the page and send it again.")


def local_path(target: str) -> str:
    """``target`` when it is a path on this site, else "/": never a redirect to another host."""
    seen = as_a_browser_reads(target)
    # Once more percent-decoded too, as a proxy or a later redirect may decode it.
    for candidate in (seen, as_a_browser_reads(unquote(target))):
        parts = urlsplit(candidate)
        if parts.scheme or parts.netloc or candidate[:1] != "/" or candidate[:2] == "//":
            return "/"
    return iri_to_uri(seen)  # ASCII: a header carries no raw UTF-8


def as_a_browser_reads(url: str) -> str:
    """A URL as a browser reads it: "/<tab>/evil.example" is "//evil.example" to it."""
    # It trims leading spaces and control characters, drops tabs and newlines anywhere and
    # takes a backslash for a slash.
    return re.sub(r"[\t\n\r]", "", url.lstrip(C0_AND_SPACE)).replace("\\", "/")


@functools.cache
def dummy_password_hash() -> str:
    """A hash made as the users' are, of a password nobody knows: an unknown user's check."""
    return generate_password_hash(secrets.token_urlsafe(16))


@bp.route("/login", methods=["GET", "POST"])
def login():
    if request.method == "POST":
        username = request.form.get("username", "")
        user = get_db().scalar(select(User).where(User.username == username))
        password = request.form.get("password", "")
        # An unknown user costs a hash check too: how long a login takes says nothing about
        # which user names exist.
        stored = user.password_hash if user is not None else dummy_password_hash()
        if not check_password_hash(stored, password) or user is None:
            flash("Wrong user name or password.")
            return render_template("login.html"), 401
        # A new session id at login: a sid planted before login is worth nothing after it.
        current_app.session_interface.regenerate(session)
        session.clear()
        session.permanent = True
        session["user_id"] = user.id
        session["username"] = user.username
        csrf_token()  # a new token for the new session: the one shown before login is void
        return redirect(local_path(request.args.get("next", "")))
    return render_template("login.html")


@bp.post("/logout")
def logout():
    session.clear()
    return redirect(url_for("shop.catalog"))


@bp.get("/account")
@login_required
def account():
    user = current_user()
    orders = get_db().scalars(
        select(Order).where(Order.user_id == user.id).order_by(Order.id.desc())
    ).all()
    return render_template(
        "account.html", user=user, orders=orders, has_avatar=bool(user.avatar_key)
    )


@bp.post("/account/avatar")
@login_required
def upload_avatar():
    upload = request.files.get("avatar")
    if upload is None or not upload.filename:
        abort(400, "Choose a file to upload as your avatar.")
    filename = clean_filename(upload.filename)
    if stream_size(upload.stream) > current_app.config["AVATAR_MAX_BYTES"]:
        abort(413)
    mimetype = uploaded_image_type(upload.stream)
    user = current_user()
    key = f"avatars/{user.id}/{filename}"
    # The avatar goes to object storage, where every instance finds it.
    s3_client().upload_fileobj(
        upload.stream, bucket(), key, ExtraArgs={"ContentType": mimetype}
    )
    user.avatar_key = key
    get_db().commit()
    return redirect(url_for("auth.account"))


@bp.get("/account/avatar")
@login_required
def avatar():
    user = current_user()
    if not user.avatar_key:
        abort(404, "No avatar uploaded yet.")
    return send_stored(user.avatar_key, "avatar", image=True)


def send_stored(key: str, filename: str, image: bool = False) -> Response:
    """Send a stored file: an avatar as the image it is, anything else as a download."""
    try:
        obj = s3_client().get_object(Bucket=bucket(), Key=key)
    except s3_client().exceptions.NoSuchKey:
        abort(404, "That file is gone from storage.")
    body = obj["Body"]
    head = body.read(HEAD)
    try:
        mimetype, headers = served_as(head, filename, image)
    except HTTPException:
        body.close()
        raise
    headers["Content-Length"] = str(obj["ContentLength"])
    # Streamed, never held whole in memory.
    chunks = itertools.chain([head], body.iter_chunks(64 * 1024))
    return Response(chunks, mimetype=mimetype, headers=headers)
