"""A chat room: messages and subscribers held by the web process."""

from collections import deque

from flask import Flask, request
from flask.views import MethodView

app = Flask(__name__)
MESSAGES = deque(maxlen=100)


class Room(MethodView):
    members = set()

    def get(self):
        return {"messages": list(MESSAGES)}

    def post(self):
        self.members.add(request.json["name"])  # expect: module-state
        MESSAGES.append(request.json["text"])  # expect: live-updates
        return "", 201


app.add_url_rule("/room", view_func=Room.as_view("room"))
