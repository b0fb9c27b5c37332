"""Keys every instance shares (from the environment, a mounted secret), and random values
that are not the app's key (CSRF tokens, nonces, an S3 server's secret)."""

import os
import secrets
from pathlib import Path

from flask import Flask, session


def read_secret_key():
    key = os.environ.get("SECRET_KEY")
    if not key:
        mounted = Path("/run/secrets/flask_secret_key")
        if not mounted.exists():
            raise RuntimeError("set SECRET_KEY (the same on every instance)")
        key = mounted.read_text().strip()
    return key


def csrf_token():
    if "_csrf" not in session:
        session["_csrf"] = secrets.token_urlsafe(32)
    return session["_csrf"]


class ObjectStore:
    def __init__(self, access_key, secret_key=None):
        self.access_key = access_key
        self.secret_key = secret_key or secrets.token_urlsafe(30)


app = Flask(__name__)
app.secret_key = read_secret_key()
app.jinja_env.globals["csrf_token"] = csrf_token
store = ObjectStore("minio", os.environ.get("S3_SECRET"))


@app.route("/")
def index():
    nonce = secrets.token_hex(8)
    return f"<script nonce={nonce}></script>"
