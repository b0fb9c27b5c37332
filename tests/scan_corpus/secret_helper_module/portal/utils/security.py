import secrets
from pathlib import Path


def random_key(length=32):
    return secrets.token_urlsafe(length)


def load_or_create_key(instance_path):
    path = Path(instance_path) / "secret.key"
    if path.exists():
        return path.read_text()
    key = random_key()
    path.write_text(key)
    return key
