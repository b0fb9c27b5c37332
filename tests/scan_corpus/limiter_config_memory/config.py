import os


class Config:
    SECRET_KEY = os.environ["SECRET_KEY"]
    RATELIMIT_STORAGE_URI = "memory://"  # expect: limiter-memory


class DevelopmentConfig(Config):
    DEBUG = True
    RATELIMIT_STORAGE_URL = "memory://"  # expect: limiter-memory[note]


class TestingConfig(Config):
    TESTING = True
    RATELIMIT_STORAGE_URI = "memory://"
