"""The mail worker, a separate process: ``python -m sample_stateless_app.worker``."""

from __future__ import annotations

import time

import redis
from rq import SimpleWorker

from . import create_app
from .stores import redis_client

START_PATIENCE = 60.0  # seconds to wait for Redis at start-up (it may be restarting)


def main() -> None:
    app = create_app()
    with app.app_context():
        deadline = time.monotonic() + START_PATIENCE
        while True:
            try:
                # SimpleWorker runs jobs in this process: no fork, so the app context stays valid.
                SimpleWorker(["mail"], connection=redis_client(app)).work(with_scheduler=False)
                return
            except redis.ConnectionError:
                # Once running, rq rides out an outage; at start-up it would just exit.
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)


if __name__ == "__main__":
    main()
