"""Live updates through Redis (Pub/Sub for the stream, a capped list for replay; Socket.IO
with a Redis message queue), listeners registered at start-up, and a work queue whose reader
is the worker, not a request."""

import json
import os
import queue

import redis
from flask import Flask, Response, request
from flask_socketio import SocketIO, emit, join_room

app = Flask(__name__)
bus = redis.Redis.from_url(os.environ["REDIS_URL"])
socketio = SocketIO(app, message_queue=os.environ["REDIS_URL"])
LISTENERS = []
JOBS = queue.Queue()


def on_order(event):
    return event


def register(listener):
    LISTENERS.append(listener)  # start-up: the same on every instance


register(on_order)


@app.post("/events")
def publish():
    event = request.get_json()
    bus.rpush("events:history", json.dumps(event))
    bus.ltrim("events:history", -100, -1)
    bus.publish("events", json.dumps(event))
    for listener in LISTENERS:
        listener(event)
    JOBS.put(event)
    return "", 202


@app.get("/events/stream")
def stream():
    def generate():
        for old in bus.lrange("events:history", 0, -1):
            yield f"data: {old.decode()}\n\n"
        pubsub = bus.pubsub()
        pubsub.subscribe("events")
        subscribers = []  # this stream's own, local
        subscribers.append(pubsub)
        for message in pubsub.listen():
            if message["type"] == "message":
                yield f"data: {message['data'].decode()}\n\n"

    return Response(generate(), mimetype="text/event-stream")


@socketio.on("join")
def on_join(data):
    join_room(data["room"])
    emit("joined", {"sid": request.sid}, to=data["room"])


def worker():
    while True:
        job = JOBS.get()
        on_order(job)


@app.get("/report")
def report():
    parts = []  # this request's own

    def collect():
        parts.append("header")
        yield from parts

    return Response(collect(), mimetype="text/plain")
