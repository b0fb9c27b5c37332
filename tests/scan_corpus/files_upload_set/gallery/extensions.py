"""Flask-Uploads (Flask-Reuploaded): an UploadSet saves into UPLOADED_PHOTOS_DEST."""

from flask_uploads import IMAGES, UploadSet

photos = UploadSet("photos", IMAGES)
