"""Flask-Session 0.6+ with an explicit cachelib store in process memory."""

from cachelib import SimpleCache
from flask import Flask
from flask_session import Session

app = Flask(__name__)
app.config.update(
    SESSION_TYPE="cachelib",  # expect: session-local
    SESSION_CACHELIB=SimpleCache(threshold=500),  # expect: session-local
)
Session(app)
