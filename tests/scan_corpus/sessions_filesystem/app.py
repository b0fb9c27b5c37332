"""Flask-Session's quick start: server-side sessions in files on this host."""

from flask import Flask, session
from flask_session import Session

app = Flask(__name__)
app.config["SESSION_PERMANENT"] = False
app.config["SESSION_TYPE"] = "filesystem"  # expect: session-local
Session(app)


@app.route("/set/<value>")
def set_value(value):
    session["key"] = value
    return "ok"


@app.route("/get")
def get_value():
    return session.get("key", "not set")
