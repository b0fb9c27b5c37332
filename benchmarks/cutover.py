"""The live cut-over under load: what simulated users notice while a two-instance before-shop
becomes an after-shop with `migrate`, beside the plain redeploy a team would otherwise do.

Both runs use the same embedded stores, the same two gunicorn instances rolled one at a time,
the same configuration switch and schema change, and the same users (log in once, then add to
the cart, check it, change and fetch their avatar, in a loop, without pause). The plain redeploy
has no bridge and no exports; `migrate` mirrors sessions, exports sessions and files, expands the
schema before the roll and contracts it after, and then SIGKILLs one after-instance.

Counted per run: requests, failed requests (after the client's retry of a refused connection),
logouts, lost cart items, lost files; the cut-over's duration (first export to the last
instance rolled) and the whole run's.

Usage: .venv/bin/python benchmarks/cutover.py [--users 20] [--dwell 2] [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

# The repo root instead of benchmarks/: benchmarks/requests.py would shadow the requests package.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from migrate.harness.cutover import CutoverResult, run_cutover  # noqa: E402

ROWS = [("requests", "requests"), ("failed requests", "failed_requests"),
        ("logouts", "logouts"), ("lost cart items", "lost_cart_items"),
        ("lost files", "lost_files"), ("API clients logged out", "api_logouts"),
        ("order events missed", "events_missed"), ("items oversold", "oversold"),
        ("sessions exported", "sessions_exported"),
        ("files exported", "files_exported"), ("cut-over seconds", "cutover_seconds"),
        ("run seconds", "seconds")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--dwell", type=float, default=2.0,
                        help="seconds of traffic between stages")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    def narrate(text: str) -> None:
        if not args.json:
            print(text, file=sys.stderr)

    runs: dict[str, CutoverResult] = {}
    narrate("== plain redeploy (no migrate) ==")
    runs["redeploy"] = run_cutover(args.users, narrate, dwell=args.dwell, migrate_state=False,
                                   kill=False)
    narrate("== migrate ==")
    runs["migrate"] = run_cutover(args.users, narrate, dwell=args.dwell)
    if args.json:
        print(json.dumps({k: {f: v for f, v in dataclasses.asdict(r).items() if f != "journey"}
                          for k, r in runs.items()}, indent=2))
        return
    plain, tool = runs["redeploy"], runs["migrate"]
    print(f"\nLive cut-over, {args.users} users, 2 instances rolled one at a time")
    print(f"{'':20} {'plain redeploy':>15} {'migrate':>10}")
    for label, name in ROWS:
        print(f"{label:20} {getattr(plain, name):>15} {getattr(tool, name):>10}")
    for label, name in (("logouts", "logouts"), ("lost cart items", "lost_cart_items"),
                        ("lost files", "lost_files"), ("API clients logged out", "api_logouts"),
                        ("order events missed", "events_missed")):
        share = getattr(tool, name) / max(1, getattr(plain, name))
        print(f"{label} with migrate / plain redeploy: {share:.2f}")
    lost = (tool.failed_requests + tool.logouts + tool.lost_cart_items + tool.lost_files
            + tool.api_logouts + tool.events_missed + tool.oversold)
    print(f"headline: {tool.requests} requests by {args.users} users over the run (before, "
          f"during and after the cut-over and the SIGKILL), "
          f"{lost} lost (failed requests, logouts, cart items, files, API clients, "
          "events, oversold items): "
          f"{'0, as required' if lost == 0 else 'NOT 0'}")
    for problem in tool.problems:
        print("  problem:", problem)


if __name__ == "__main__":
    main()
