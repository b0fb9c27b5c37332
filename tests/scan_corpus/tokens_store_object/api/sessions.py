"""An API session registry kept by a long-lived object (a pattern from small REST tutorials)."""

import secrets
import time


class SessionRegistry:
    """Who each opaque key belongs to, and until when."""

    def __init__(self, lifetime=3600):
        self.lifetime = lifetime
        self._by_key = {}

    def open(self, user_id):
        key = secrets.token_hex(20)
        self._by_key[key] = (user_id, time.time() + self.lifetime)  # expect: token-store
        return key

    def owner(self, key):
        entry = self._by_key.get(key)
        return entry[0] if entry and entry[1] > time.time() else None

    def close(self, key):
        self._by_key.pop(key, None)  # expect: token-store


registry = SessionRegistry()
