"""Test-only settings (issue 10, item 20): a test run is one process, so an in-memory
database and a simple cache are what it wants; nothing here runs on two instances."""

import os


class Config:
    SQLALCHEMY_DATABASE_URI = os.environ["DATABASE_URL"]
    CACHE_TYPE = "RedisCache"


class TestingConfig(Config):
    TESTING = True
    SQLALCHEMY_DATABASE_URI = "sqlite://"
    CACHE_TYPE = "SimpleCache"


class IntegrationTestConfig(Config):
    SQLALCHEMY_DATABASE_URI = "sqlite:///:memory:"


TEST_SETTINGS = {"TESTING": True, "SQLALCHEMY_DATABASE_URI": "sqlite://"}
