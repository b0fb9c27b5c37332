"""Accounts with Flask-Login: register, log in, log out."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask import current_app as app
from flask_login import UserMixin, login_required, login_user, logout_user
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from werkzeug.security import check_password_hash, generate_password_hash

from .db import conn, tables
from .extensions import login_manager

bp = Blueprint("auth", __name__)


class User(UserMixin):
    def __init__(self, id: int, username: str) -> None:
        self.id, self.username = id, username


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    users = tables().users
    row = conn().execute(select(users.c.id, users.c.username)
                         .where(users.c.id == int(user_id))).first()
    return User(row.id, row.username) if row else None


def _safe_next(target: str | None) -> str:
    """Only a path on this site: never send a user to another host after login."""
    parts = urlsplit(target or "")
    if not target or parts.scheme or parts.netloc or not target.startswith("/") \
            or target.startswith("//"):
        return url_for("photos.index")
    return target


@bp.route("/register", methods=["GET", "POST"])
def register():
    if request.method == "POST":
        username = request.form.get("username", "").strip()
        password = request.form.get("password", "")
        if not username or len(password) < 8:
            flash("Choose a user name and a password of 8 characters or more.")
            return render_template("auth.html", action="Register"), 400
        try:
            conn().execute(insert(tables().users).values(
                username=username, password_hash=generate_password_hash(password)))
            conn().commit()
        except IntegrityError:
            flash("That user name is taken.")
            return render_template("auth.html", action="Register"), 409
        return redirect(url_for("auth.login"))
    return render_template("auth.html", action="Register")


@bp.route("/login", methods=["GET", "POST"])
def login():
    if request.method == "POST":
        users = tables().users
        row = conn().execute(select(users).where(
            users.c.username == request.form.get("username", ""))).first()
        if row is None or not check_password_hash(row.password_hash,
                                                  request.form.get("password", "")):
            flash("Wrong user name or password.")
            return render_template("auth.html", action="Log in"), 401
        login_user(User(row.id, row.username))
        app.session_interface.regenerate(session)  # a new session id at login
        return redirect(_safe_next(request.args.get("next")))
    return render_template("auth.html", action="Log in")


@bp.post("/logout")
@login_required
def logout():
    logout_user()
    return redirect(url_for("auth.login"))
