"""The gevent Server-Sent Events recipe many demos copy: a list of queues, one per stream."""

import gevent
from flask import Flask, Response, request
from gevent.queue import Queue

app = Flask(__name__)
streams = []


class ServerSentEvent:
    def __init__(self, data):
        self.data = data

    def encode(self):
        return f"data: {self.data}\n\n"


@app.route("/publish")
def publish():
    msg = request.args.get("data", "")

    def notify():
        for sub in streams[:]:
            sub.put(msg)

    gevent.spawn(notify)  # expect: background-thread
    return "OK"


@app.route("/subscribe")
def subscribe():
    def gen():
        q = Queue()
        streams.append(q)  # expect: live-updates
        try:
            while True:
                yield ServerSentEvent(str(q.get())).encode()
        except GeneratorExit:
            streams.remove(q)  # expect: live-updates

    return Response(gen(), mimetype="text/event-stream")
