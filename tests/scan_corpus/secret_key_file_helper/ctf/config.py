"""A key generated once per host and cached in a file beside the code (as a popular CTF
platform's config does), used when the environment has none."""

import os


def gen_secret_key():
    # Attempt to read the secret from the secret file
    # This will fail if the secret has not been written
    try:
        with open(".ctf_secret_key", "rb") as secret:
            key = secret.read()
    except OSError:
        key = None

    if not key:
        key = os.urandom(64)
        # Attempt to write the secret file
        # This will fail if the filesystem is read-only
        try:
            with open(".ctf_secret_key", "wb") as secret:
                secret.write(key)
                secret.flush()
        except OSError:
            pass
    return key


class ServerConfig:
    SECRET_KEY = os.environ.get("SECRET_KEY") or gen_secret_key()  # expect: secret-key-per-process
    SQLALCHEMY_TRACK_MODIFICATIONS = False
