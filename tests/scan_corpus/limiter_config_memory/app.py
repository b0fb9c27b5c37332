from flask import Flask
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from .config import Config

app = Flask(__name__)
app.config.from_object(Config)
limiter = Limiter(get_remote_address, app=app)


@app.post("/api/search")
@limiter.limit("30/minute")
def search():
    return {"results": []}
