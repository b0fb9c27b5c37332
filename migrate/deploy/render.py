"""`migrate deploy`: render one target's files for a spec and write them (atomically) to a folder.

Re-running is safe: a file whose content is the same is left alone (and reported unchanged),
a changed one is replaced whole, and files of ours that a target no longer renders are left in
place (reported nowhere: we never delete what we did not just write).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from migrate.deploy import balancers, kubernetes
from migrate.deploy.spec import DeploySpec
from migrate.errors import UsageError

TARGETS = ("kubernetes", "haproxy", "nginx")


@dataclass
class RenderedFile:
    """One file of a target: where it goes and whether this run wrote it."""

    path: str
    status: str  # "new", "changed", "unchanged" (a dry run: what a run would do)
    bytes: int
    content: str


@dataclass
class DeployResult:
    """What ``migrate deploy TARGET`` rendered, for whom, and what the operator does next."""

    target: str
    out: str
    name: str
    app: str
    dry_run: bool
    files: list[RenderedFile] = field(default_factory=list)
    secret: str | None = None  # the Secret the pods read (Kubernetes), never its values
    secret_keys: list[str] = field(default_factory=list)
    servers: list[str] = field(default_factory=list)
    next_steps: list[str] = field(default_factory=list)


def render(target: str, spec: DeploySpec, out: str | os.PathLike[str], *,
           dry_run: bool = False) -> DeployResult:
    """Render ``target``'s files for ``spec`` into folder ``out`` (nothing written if dry)."""
    if target not in TARGETS:
        raise UsageError(f"unknown deploy target {target!r}: use one of {', '.join(TARGETS)}")
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--out {folder} is a file: give a folder for the {target} files")
    texts = _texts(target, spec)
    result = DeployResult(target, str(folder), spec.name, spec.app, dry_run,
                          next_steps=_next_steps(target, spec, folder))
    if target == "kubernetes":
        result.secret, result.secret_keys = spec.secret_name, list(spec.secret_keys)
    else:
        result.servers = list(spec.servers)
    for name, text in texts.items():
        path = folder / name
        status = _status(path, text)
        if not dry_run and status != "unchanged":
            _write(path, text)
        result.files.append(RenderedFile(str(path), status, len(text.encode()), text))
    return result


def _texts(target: str, spec: DeploySpec) -> dict[str, str]:
    if target == "kubernetes":
        return kubernetes.render(spec)
    if target == "haproxy":
        return balancers.haproxy(spec)
    return balancers.nginx(spec)


def _status(path: Path, text: str) -> str:
    try:
        old = path.read_bytes()
    except FileNotFoundError:
        return "new"
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}; fix its permissions or pick "
                         "another --out") from None
    return "unchanged" if old == text.encode() else "changed"


def _write(path: Path, text: str) -> None:
    """Write whole or not at all: a temporary file beside it, then a rename."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}; pick another --out") from None


def _next_steps(target: str, spec: DeploySpec, folder: Path) -> list[str]:
    if target == "kubernetes":
        return [f"{kubernetes.secret_command(spec)}   # {spec.name}.env: "
                + " ".join(f"{k}=..." for k in spec.secret_keys),
                f"kubectl apply -f {folder}"]
    if target == "haproxy":
        cfg = folder / "haproxy.cfg"
        return [f"haproxy -c -f {cfg}",
                f'drain one: echo "disable server {spec.name}/{spec.name}-1" | '
                f"socat stdio {spec.admin_socket}"]
    return [f"nginx -t -c {(folder / 'nginx.conf').absolute()}",
            f"or copy {folder / (spec.name + '.conf')} into /etc/nginx/conf.d/"]
