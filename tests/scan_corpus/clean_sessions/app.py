"""Sessions that every instance shares: Redis through Flask-Session, a cachelib RedisCache,
and Flask's own signed-cookie sessions."""

import os

import redis
from cachelib import RedisCache
from flask import Flask, session
from flask_session import Session

app = Flask(__name__)
app.config["SECRET_KEY"] = os.environ["SECRET_KEY"]
app.config["SESSION_TYPE"] = "redis"
app.config["SESSION_REDIS"] = redis.from_url(os.environ["REDIS_URL"])
Session(app)

admin = Flask("admin")
admin.config.update(SESSION_TYPE="cachelib", SESSION_CACHELIB=RedisCache(host="redis"))
Session(admin)

cookie_only = Flask("cookies")
cookie_only.secret_key = os.environ.get("SECRET_KEY")


@app.route("/")
def index():
    session["seen"] = True
    return "ok"
