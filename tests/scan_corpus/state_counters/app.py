"""A view counter and a "who is online" list in module globals (tutorial-style apps)."""

from flask import Flask, jsonify, request

app = Flask(__name__)

VIEW_COUNTS = {}
ONLINE = []
TOTAL_VISITS = 0


@app.route("/posts/<int:post_id>")
def show_post(post_id):
    VIEW_COUNTS[post_id] = VIEW_COUNTS.get(post_id, 0) + 1  # expect: module-state
    return jsonify(views=VIEW_COUNTS[post_id])


@app.before_request
def track_visits():
    global TOTAL_VISITS
    TOTAL_VISITS += 1  # expect: global-rebind
    if request.remote_addr not in ONLINE:
        ONLINE.append(request.remote_addr)  # expect: module-state


@app.route("/stats")
def stats():
    return jsonify(total=TOTAL_VISITS, online=len(ONLINE))
