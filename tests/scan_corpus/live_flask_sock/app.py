"""Flask-Sock broadcast: the connected sockets in a module-level list."""

from flask import Flask, request
from flask_sock import Sock

app = Flask(__name__)
sock = Sock(app)
connected = []


@sock.route("/chat")
def chat(ws):
    connected.append(ws)  # expect: live-updates
    try:
        while True:
            text = ws.receive()
            for other in connected:
                other.send(text)
    finally:
        connected.remove(ws)  # expect: live-updates


@app.post("/announce")
def announce():
    for client in list(connected):
        client.send(request.get_data(as_text=True))
    return "", 204
