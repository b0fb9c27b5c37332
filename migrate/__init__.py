"""migrate: take a stateful Flask app to a stateless one, step by step, proving nothing is lost."""

__version__ = "0.1.0"
