"""Seats sold under a semaphore, with sqlite3 and explicit acquire/release."""

import sqlite3
import threading

from flask import Flask, abort, g

app = Flask(__name__)
one_at_a_time = threading.BoundedSemaphore(1)


def get_db():
    if "db" not in g:
        g.db = sqlite3.connect(app.config["DATABASE"])  # expect: sqlite-local
        g.db.row_factory = sqlite3.Row
    return g.db


def seats_left(db, show_id):
    return db.execute("SELECT seats FROM shows WHERE id = ?", (show_id,)).fetchone()["seats"]


def set_seats(db, show_id, seats):
    db.execute("UPDATE shows SET seats = ? WHERE id = ?", (seats, show_id))
    db.commit()


@app.post("/shows/<int:show_id>/book")
def book(show_id):
    db = get_db()
    one_at_a_time.acquire()  # expect: process-lock
    try:
        left = seats_left(db, show_id)
        if left < 1:
            abort(409)
        set_seats(db, show_id, left - 1)
    finally:
        one_at_a_time.release()
    return "", 201
