"""A home-made login throttle: attempts per address in a defaultdict."""

import time
from collections import defaultdict

from flask import Flask, abort, request

app = Flask(__name__)
ATTEMPTS = defaultdict(list)
WINDOW = 60


def too_many(address):
    recent = [t for t in ATTEMPTS[address] if t > time.time() - WINDOW]
    ATTEMPTS[address] = recent  # expect: module-state
    return len(recent) >= 5


@app.before_request
def throttle_logins():
    if request.endpoint == "login" and request.method == "POST":
        if too_many(request.remote_addr):
            abort(429)
        ATTEMPTS[request.remote_addr].append(time.time())  # expect: module-state


@app.post("/login")
def login():
    return "ok"
