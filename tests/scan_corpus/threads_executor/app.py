"""Reports built in a thread pool after the response is sent."""

from concurrent.futures import ThreadPoolExecutor

from flask import Flask, jsonify

app = Flask(__name__)
executor = ThreadPoolExecutor(max_workers=2)
JOBS = {}


def build_report(report_id):
    return report_id


@app.post("/reports/<int:report_id>")
def start_report(report_id):
    future = executor.submit(build_report, report_id)  # expect: background-thread
    JOBS[report_id] = future  # expect: module-state
    return jsonify(queued=report_id), 202
