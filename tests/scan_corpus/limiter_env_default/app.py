import os

from flask import Flask
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

app = Flask(__name__)
limiter = Limiter(
    get_remote_address,
    app=app,
    storage_uri=os.environ.get("LIMITS_STORAGE", "memory://"),  # expect: limiter-memory
)


@app.post("/password-reset")
@limiter.limit("3 per hour")
def password_reset():
    return "", 202
