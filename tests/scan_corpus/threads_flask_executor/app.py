from flask import Flask
from flask_executor import Executor

app = Flask(__name__)
executor = Executor(app)


def resize_images(album_id):
    return album_id


@app.route("/albums/<int:album_id>/resize", methods=["POST"])
def resize(album_id):
    executor.submit(resize_images, album_id)  # expect: background-thread
    return "", 202
