"""A factory whose views share a lock and a tally through the closure: one per process."""

import threading

from flask import Flask, jsonify


def create_app():
    app = Flask(__name__)
    tally = {"votes": 0}
    guard = threading.Lock()

    @app.post("/vote")
    def vote():
        with guard:  # expect: process-lock
            tally["votes"] = tally["votes"] + 1  # expect: module-state
            return jsonify(votes=tally["votes"])

    @app.get("/votes")
    def votes():
        with guard:
            return jsonify(votes=tally["votes"])

    return app
