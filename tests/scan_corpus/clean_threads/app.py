"""Work that finishes inside the request, runs from the command line, or goes to a queue."""

import threading
from concurrent.futures import ThreadPoolExecutor

from flask import Flask, jsonify
from redis import Redis
from rq import Queue

app = Flask(__name__)
queue = Queue(connection=Redis())


def fetch(url):
    return len(url)


def send_welcome(user_id):
    return user_id


@app.get("/sizes")
def sizes():
    with ThreadPoolExecutor(max_workers=4) as pool:
        found = list(pool.map(fetch, ["a", "bb", "ccc"]))
    worker = threading.Thread(target=fetch, args=("x",))
    worker.start()
    worker.join()
    return jsonify(found)


@app.post("/signup/<int:user_id>")
def signup(user_id):
    queue.enqueue(send_welcome, user_id)
    return "", 201


if __name__ == "__main__":
    threading.Thread(target=fetch, args=("warm-up",), daemon=True).start()
    app.run()
