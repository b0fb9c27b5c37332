"""The most copied line of Flask answers: a random key made at import."""

import os

from flask import Flask, session

app = Flask(__name__)
app.secret_key = os.urandom(24)  # expect: secret-key-per-process


@app.route("/")
def index():
    session["visits"] = session.get("visits", 0) + 1
    return str(session["visits"])
