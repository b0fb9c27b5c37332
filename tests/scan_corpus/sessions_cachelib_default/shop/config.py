import os


class Config:
    SECRET_KEY = os.environ["SECRET_KEY"]
    SESSION_TYPE = "cachelib"  # expect: session-local
    SESSION_USE_SIGNER = True
