import os
import secrets


def load_secret_key():
    """The one key every instance shares: from the environment or a mounted file."""
    path = os.environ.get("SECRET_KEY_FILE")
    if path:
        with open(path) as f:
            return f.read().strip()
    return os.environ["SECRET_KEY"]


def new_api_token():
    return secrets.token_urlsafe(32)
