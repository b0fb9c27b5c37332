"""The mail worker, a separate process: ``python -m sample_stateless_app.worker``."""

from __future__ import annotations

from rq import SimpleWorker

from . import create_app
from .stores import redis_client


def main() -> None:
    app = create_app()
    with app.app_context():
        # SimpleWorker runs jobs in this process: no fork, so the app context and pools stay valid.
        SimpleWorker(["mail"], connection=redis_client(app)).work(with_scheduler=False)


if __name__ == "__main__":
    main()
