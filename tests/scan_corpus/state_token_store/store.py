"""Opaque API tokens kept in a module-level dict (many small REST APIs do this)."""

TOKENS: dict[str, int] = {}
