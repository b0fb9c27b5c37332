"""A profile picture resized with Pillow and saved under static/ (the well-known blog
tutorial's save_picture helper)."""

import os
import secrets

from flask import Blueprint, current_app, redirect, render_template, url_for
from PIL import Image

from .forms import UpdateAccountForm

users = Blueprint("users", __name__)


def save_picture(form_picture):
    random_hex = secrets.token_hex(8)
    _, f_ext = os.path.splitext(form_picture.filename)
    picture_fn = random_hex + f_ext
    picture_path = os.path.join(current_app.root_path, "static/profile_pics", picture_fn)
    i = Image.open(form_picture)
    i.thumbnail((125, 125))
    i.save(picture_path)  # expect: local-file-write
    return picture_fn


def save_cover(data):
    folder = os.path.join(current_app.root_path, "static", "covers")
    data.save(os.path.join(folder, data.filename))  # expect: local-file-write


@users.route("/account", methods=["GET", "POST"])
def account():
    form = UpdateAccountForm()
    if form.validate_on_submit():
        if form.picture.data:
            save_picture(form.picture.data)
        if form.cover.data:
            save_cover(form.cover.data)
        return redirect(url_for("users.account"))
    return render_template("account.html", form=form)
