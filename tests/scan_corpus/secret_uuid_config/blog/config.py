import uuid


class Config:
    SECRET_KEY = str(uuid.uuid4())  # expect: secret-key-per-process
    POSTS_PER_PAGE = 10
