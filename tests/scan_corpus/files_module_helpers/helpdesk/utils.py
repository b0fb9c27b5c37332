import os

from flask import current_app
from werkzeug.utils import secure_filename


def save_file(f):
    filename = secure_filename(f.filename)
    f.save(os.path.join(current_app.config["UPLOAD_FOLDER"], filename))  # expect: local-file-write
    return filename


class FileHelper:
    @staticmethod
    def save_attachment(upload, ticket_id):
        folder = os.path.join(current_app.instance_path, "tickets", str(ticket_id))
        os.makedirs(folder, exist_ok=True)  # expect: local-file-write
        with open(os.path.join(folder, "attachment.bin"), "wb") as out:  # expect: local-file-write
            out.write(upload.read())
