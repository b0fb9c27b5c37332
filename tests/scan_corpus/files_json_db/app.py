"""A to-do app that keeps its data in a JSON file in the instance folder."""

import json
import os

from flask import Flask, current_app, jsonify, request

app = Flask(__name__, instance_relative_config=True)


def data_file():
    return os.path.join(current_app.instance_path, "todos.json")


def load():
    if not os.path.exists(data_file()):
        return []
    with open(data_file()) as f:
        return json.load(f)


def store(todos):
    os.makedirs(current_app.instance_path, exist_ok=True)  # expect: local-file-write
    with open(data_file(), "w") as f:  # expect: local-file-write
        json.dump(todos, f)


@app.post("/todos")
def add_todo():
    todos = load()
    todos.append(request.json["title"])
    store(todos)
    return jsonify(todos), 201
