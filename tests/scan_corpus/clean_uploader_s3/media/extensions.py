"""The same shape as a local uploader (item 19), but writing to object storage."""

import boto3


class Uploader:
    def __init__(self):
        self.bucket = None
        self.client = None

    def init_app(self, app):
        self.bucket = app.config["S3_BUCKET"]
        self.client = boto3.client("s3", endpoint_url=app.config.get("S3_ENDPOINT_URL"))

    def save(self, upload, key):
        self.client.upload_fileobj(upload.stream, self.bucket, key)
        return key

    def url(self, key):
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=300)


uploader = Uploader()
