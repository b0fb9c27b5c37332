import os

SESSION_TYPE = "redis"  # expect: session-not-initialised
SESSION_REDIS_URL = os.environ.get("REDIS_URL")
