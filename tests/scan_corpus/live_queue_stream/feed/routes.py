import json

from flask import Blueprint, Response, request, stream_with_context

from . import bus

bp = Blueprint("feed", __name__)


@bp.post("/notices")
def post_notice():
    notice = request.get_json()
    bus.latest.append(notice)  # expect: live-updates
    bus.notices.put(notice)
    return "", 202


@bp.get("/notices/stream")
def notice_stream():
    @stream_with_context
    def generate():
        for old in list(bus.latest):
            yield f"data: {json.dumps(old)}\n\n"
        while True:
            notice = bus.notices.get()  # expect: live-updates
            yield f"data: {json.dumps(notice)}\n\n"

    return Response(generate(), mimetype="text/event-stream")
