"""A config module with one class per environment (issue 10, item 20): the testing class's
in-memory cache is no trap, the development class's is a note, the production one's is."""

import os


class Config:
    SECRET_KEY = os.environ.get("SECRET_KEY")
    CACHE_TYPE = "simple"  # expect: process-cache


class DevelopmentConfig(Config):
    DEBUG = True
    CACHE_TYPE = "SimpleCache"  # expect: process-cache[note]


class TestingConfig(Config):
    TESTING = True
    CACHE_TYPE = "SimpleCache"


class ProductionConfig(Config):
    CACHE_TYPE = "RedisCache"
    CACHE_REDIS_URL = os.environ.get("REDIS_URL")


config = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
    "default": DevelopmentConfig,
}
