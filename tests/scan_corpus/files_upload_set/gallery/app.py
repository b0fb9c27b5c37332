from flask import Flask, request
from flask_uploads import DOCUMENTS, UploadSet, configure_uploads

from .extensions import photos

app = Flask(__name__)
app.config["UPLOADED_PHOTOS_DEST"] = "static/img"
app.config["UPLOADED_DOCS_DEST"] = "static/docs"
docs = UploadSet("docs", DOCUMENTS)
configure_uploads(app, (photos, docs))


@app.route("/upload", methods=["POST"])
def upload():
    filename = photos.save(request.files["photo"])  # expect: local-file-write
    return photos.url(filename)


@app.route("/docs", methods=["POST"])
def upload_doc():
    return docs.url(docs.save(request.files["doc"]))  # expect: local-file-write
