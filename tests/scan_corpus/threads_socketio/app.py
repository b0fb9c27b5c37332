"""Flask-SocketIO's example app: a background task started by the first client."""

from threading import Lock

from flask import Flask, render_template, request
from flask_socketio import SocketIO, emit

app = Flask(__name__)
sio = SocketIO(app)
thread = None
thread_lock = Lock()
ROOM_MEMBERS = {}


def ticker():
    count = 0
    while True:
        sio.sleep(10)
        count += 1
        sio.emit("my_response", {"data": "Server generated event", "count": count})


@app.route("/")
def index():
    return render_template("index.html", async_mode=sio.async_mode)


@sio.event
def connect():
    global thread
    with thread_lock:
        if thread is None:
            thread = sio.start_background_task(ticker)  # expect: global-rebind,background-thread
    emit("my_response", {"data": "Connected", "count": 0})


@sio.on("join")
def on_join(data):
    ROOM_MEMBERS.setdefault(data["room"], set()).add(request.sid)  # expect: live-updates
