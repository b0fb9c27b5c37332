"""An app factory keeps the open streams in a list of its own: one list per process."""

import json
import queue

from flask import Flask, Response, request


def create_app():
    app = Flask(__name__)
    listeners = []

    @app.post("/orders/<int:order_id>/status")
    def set_status(order_id):
        event = {"order": order_id, "status": request.form["status"]}
        for inbox in list(listeners):
            inbox.put(event)
        return "", 204

    @app.get("/orders/stream")
    def order_stream():
        inbox = queue.SimpleQueue()
        listeners.append(inbox)  # expect: live-updates

        def events():
            try:
                while True:
                    yield f"data: {json.dumps(inbox.get())}\n\n"
            finally:
                listeners.remove(inbox)  # expect: live-updates

        return Response(events(), mimetype="text/event-stream")

    return app
