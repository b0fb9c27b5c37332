"""A home-made server-side session store: a dict in the process."""

import uuid

from flask import Flask
from flask.sessions import SessionInterface, SessionMixin
from werkzeug.datastructures import CallbackDict


class MemorySession(CallbackDict, SessionMixin):
    def __init__(self, initial=None, sid=None):
        CallbackDict.__init__(self, initial)
        self.sid = sid
        self.modified = False


class MemorySessionInterface(SessionInterface):  # expect: session-local
    def __init__(self):
        self.store = {}

    def open_session(self, app, request):
        sid = request.cookies.get(app.config["SESSION_COOKIE_NAME"])
        if sid and sid in self.store:
            return MemorySession(self.store[sid], sid=sid)
        return MemorySession(sid=str(uuid.uuid4()))

    def save_session(self, app, session, response):
        self.store[session.sid] = dict(session)
        response.set_cookie(app.config["SESSION_COOKIE_NAME"], session.sid, httponly=True)


app = Flask(__name__)
app.session_interface = MemorySessionInterface()
