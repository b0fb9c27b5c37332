"""APScheduler started inside the web app: every instance runs every job."""

import atexit

from apscheduler.schedulers.background import BackgroundScheduler
from flask import Flask

app = Flask(__name__)


def cleanup_expired():
    pass


scheduler = BackgroundScheduler(daemon=True)
scheduler.add_job(func=cleanup_expired, trigger="interval", minutes=5)
scheduler.start()  # expect: background-thread[warning]
atexit.register(lambda: scheduler.shutdown())


@app.route("/")
def index():
    return "ok"
