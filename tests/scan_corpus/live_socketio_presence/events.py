"""Who is online, by Socket.IO session id, in a dict of the web process."""

from flask import request
from flask_socketio import emit

from .extensions import socketio

online = {}


@socketio.on("connect")
def on_connect(auth):
    online[request.sid] = auth.get("name", "anonymous")  # expect: live-updates
    emit("presence", sorted(online.values()), broadcast=True)


@socketio.on("disconnect")
def on_disconnect():
    online.pop(request.sid, None)  # expect: live-updates
    emit("presence", sorted(online.values()), broadcast=True)
