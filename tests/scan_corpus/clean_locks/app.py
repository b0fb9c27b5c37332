"""Locks that guard nothing another instance shares: made per call, held around reads only,
around a single atomic UPDATE, or around a blind append to a per-process log."""

import logging
import multiprocessing
import sqlite3
import threading

from flask import Flask, abort, jsonify

app = Flask(__name__)
log = logging.getLogger(__name__)
SETTINGS = {"theme": "light"}
settings_lock = threading.Lock()
stock_lock = threading.Lock()
served = multiprocessing.Value("i", 0)


def get_db():
    return sqlite3.connect(app.config["DATABASE_PATH"])  # migrate: ignore[sqlite-local]


@app.get("/settings")
def settings():
    with settings_lock:
        return jsonify(dict(SETTINGS))


@app.post("/products/<int:product_id>/buy")
def buy(product_id):
    db = get_db()
    with stock_lock:  # redundant, not a trap: the UPDATE below is atomic in the database
        sold = db.execute("UPDATE products SET stock = stock - 1 WHERE id = ? AND stock > 0",
                          (product_id,)).rowcount
        db.commit()
    if not sold:
        abort(409)
    return "", 201


@app.get("/report")
def report():
    lock = threading.Lock()  # made here: guards only this call's threads
    rows = []
    with lock:
        rows.append(len(rows))
        rows[0] = rows[0] + 1
    log.info("served %s", served.value)
    return jsonify(rows)


@app.cli.command("reset-settings")
def reset_settings():
    with settings_lock:  # a command, not a request
        SETTINGS["theme"] = SETTINGS.get("default", "light")
