"""Flask-Session configured for a shared store, but Session(app) was forgotten: sessions
silently stay in signed cookies."""

import os

from flask import Flask

app = Flask(__name__)
app.config["SESSION_TYPE"] = "sqlalchemy"  # expect: session-not-initialised
app.config["SESSION_SQLALCHEMY_TABLE"] = "sessions"
app.config["SQLALCHEMY_DATABASE_URI"] = os.environ["DATABASE_URL"]
