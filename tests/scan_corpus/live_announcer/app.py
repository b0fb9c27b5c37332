"""The "MessageAnnouncer" SSE pattern: a module-level object holding a queue per listener."""

import queue

from flask import Flask, Response, request

app = Flask(__name__)


class MessageAnnouncer:
    def __init__(self):
        self.targets = []

    def listen(self):
        q = queue.Queue(maxsize=5)
        self.targets.append(q)  # expect: live-updates
        return q

    def announce(self, msg):
        for i in reversed(range(len(self.targets))):
            try:
                self.targets[i].put_nowait(msg)
            except queue.Full:
                del self.targets[i]  # expect: live-updates


announcer = MessageAnnouncer()


def format_sse(data, event=None):
    msg = f"data: {data}\n\n"
    return f"event: {event}\n{msg}" if event is not None else msg


@app.post("/ping")
def ping():
    announcer.announce(msg=format_sse(data=request.get_data(as_text=True)))
    return {}, 200


@app.get("/listen")
def listen():
    def stream():
        messages = announcer.listen()
        while True:
            yield messages.get()

    return Response(stream(), mimetype="text/event-stream")
