"""multiprocessing primitives: they reach the processes of one host, never another host."""

import multiprocessing

from flask import Flask, abort, jsonify, request

app = Flask(__name__)
downloads = multiprocessing.Value("i", 0)
redeem_lock = multiprocessing.Lock()
redeemed = set()


@app.get("/download")
def download():
    with downloads.get_lock():
        downloads.value += 1  # expect: process-lock
    return jsonify(downloads=downloads.value)


@app.post("/coupons/redeem")
def redeem():
    code = request.form["code"]
    with redeem_lock:  # expect: process-lock
        if code in redeemed:
            abort(409)
        redeemed.add(code)  # expect: module-state
    return "", 204
