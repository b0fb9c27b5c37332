"""What to deploy: ``[tool.migrate.deploy]`` in the app's pyproject.toml, checked, with defaults.

Every value ends up inside a YAML manifest or a balancer's config file, so each is checked
against what it may be (a DNS label, a gunicorn app spec, HOST:PORT, a URL path) before
anything is rendered: a newline or a ``;`` in a server name must not become a directive.
Secret values never enter a spec: only the *names* of the keys a Secret holds.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from migrate import redact
from migrate.config import ToolConfig
from migrate.errors import UsageError

TABLE = "[tool.migrate.deploy]"
DEFAULT_SECRET_KEYS = ("SECRET_KEY", "DATABASE_URL", "REDIS_URL")
MAX_NAME = 40  # a DNS label is 63; room for "-worker-<pod hash>" and "-config"

_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_APP = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*(:[A-Za-z_][A-Za-z0-9_.]*(\([^\s'\"\\;{}]*\))?)?$")
_IMAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}$")
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PATH = re.compile(r"^/[A-Za-z0-9._~/-]{0,200}$")
_HOST = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]{2,45}\])$")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|k|M|G)?$")
_SOCKET = re.compile(r"^/[A-Za-z0-9._/-]{1,200}$")
_WORD = re.compile(r"^[^\x00-\x1f\x7f]{1,1000}$")  # one word of the worker's command


@dataclass
class DeploySpec:
    """One app's deployment, as the renderers need it (every field checked by ``check``)."""

    name: str
    app: str
    image: str | None = None
    port: int = 8000  # the container port gunicorn binds
    replicas: int = 2
    max_replicas: int = 0  # 0: three times replicas
    cpu_target: int = 70  # the HPA's average CPU utilization, percent of the request
    workers: int = 2  # gunicorn workers per pod
    threads: int = 1  # threads per worker; more than 1 runs gunicorn's gthread worker
    worker: list[str] = field(default_factory=list)  # the background worker's command, if any
    worker_replicas: int = 1
    worker_grace_seconds: int = 60  # a worker finishes its current job on SIGTERM
    readiness: str = "/readyz"
    liveness: str = "/healthz"
    drain_seconds: int = 10  # preStop: served while the endpoints forget the pod
    request_timeout: int = 30  # gunicorn --timeout and --graceful-timeout
    secret: str = ""  # the Secret's name ("" -> NAME-env)
    secret_keys: list[str] = field(default_factory=lambda: list(DEFAULT_SECRET_KEYS))
    config: dict[str, str] = field(default_factory=dict)  # the ConfigMap: no secret in it
    cpu_request: str = "250m"
    memory_request: str = "256Mi"
    memory_limit: str = "512Mi"
    servers: list[str] = field(default_factory=list)  # HOST:PORT of each instance (balancers)
    listen: str = "80"  # the balancer's PORT or HOST:PORT
    admin_socket: str = "/run/haproxy/admin.sock"
    max_body_mb: int = 16  # nginx client_max_body_size

    @property
    def secret_name(self) -> str:
        return self.secret or f"{self.name}-env"

    @property
    def hpa_max(self) -> int:
        return self.max_replicas or self.replicas * 3

    @property
    def grace_seconds(self) -> int:
        """terminationGracePeriodSeconds: the drain, then in-flight requests, then a margin."""
        return self.drain_seconds + self.request_timeout + 5


_INTS = {"port": (1, 65535), "replicas": (2, 1000), "max_replicas": (0, 1000),
         "cpu_target": (1, 100), "workers": (1, 64), "threads": (1, 256),
         "worker_replicas": (1, 1000),
         "worker_grace_seconds": (1, 3600), "drain_seconds": (0, 300),
         "request_timeout": (1, 3600), "max_body_mb": (1, 10240)}
_STRINGS = {"name", "app", "image", "readiness", "liveness", "secret", "cpu_request",
            "memory_request", "memory_limit", "listen", "admin_socket"}
KNOWN = _STRINGS | set(_INTS) | {"worker", "secret_keys", "config", "servers"}


def load_spec(tool: ToolConfig, **overrides: Any) -> DeploySpec:
    """The spec from ``[tool.migrate.deploy]``, command-line ``overrides`` (not None) winning."""
    table = dict(tool.section("deploy"))
    where = f"{TABLE} in {tool.source}" if tool.source else TABLE
    unknown = sorted(set(table) - KNOWN)
    if unknown:
        raise UsageError(f"{where}: unknown key {unknown[0]!r}; the keys are "
                         f"{', '.join(sorted(KNOWN))}")
    given = {k: v for k, v in overrides.items() if v is not None and v != ()}
    table.update(given)
    app = table.get("app")
    if not app:
        raise UsageError(f"no app to deploy: pass --app module:create_app() or set app in "
                         f"{where}")
    src = _sources(where, set(given))
    values: dict[str, Any] = {"app": _string(src("app"), "app", app)}
    values["name"] = (_string(src("name"), "name", table["name"]) if "name" in table
                      else default_name(values["app"]))
    for key in _STRINGS - {"app", "name"}:
        if key in table:
            values[key] = _string(src(key), key, table[key])
    for key in _INTS:
        if key in table:
            values[key] = _int(src(key), key, table[key])
    if "worker" in table:
        values["worker"] = _command(where, table["worker"])
    if "secret_keys" in table:
        values["secret_keys"] = _strings(where, "secret_keys", table["secret_keys"])
    if "servers" in table:
        values["servers"] = [s.strip() for item in _strings(src("servers"), "servers",
                                                            table["servers"])
                             for s in item.split(",") if s.strip()]
    if "config" in table:
        values["config"] = _config(where, table["config"])
    spec = DeploySpec(**values)
    check(spec, where, options=set(given))
    return spec


def _sources(where: str, options: set[str]) -> Callable[[str], str]:
    """Where a key's value came from, for an error: its command-line option or the table."""
    return lambda key: f"--{key.replace('_', '-')}" if key in options else where


def default_name(app: str) -> str:
    """A resource name from the app spec: ``sample_stateless_app:create_app()`` -> the module."""
    module = app.split(":", 1)[0].split(".", 1)[0]
    return re.sub(r"[^a-z0-9]+", "-", module.lower()).strip("-")[:MAX_NAME] or "app"


def check(spec: DeploySpec, where: str = TABLE, *, options: set[str] | None = None) -> None:
    """Raise UsageError (naming the key and what it may be) for a value unfit to render.

    ``options``: the keys given on the command line (named as such in the error).
    """
    src = _sources(where, options or set())
    rules = [
        ("name", spec.name, _NAME, "a DNS label: lower-case letters, digits and '-'"),
        ("app", spec.app, _APP, "a gunicorn app spec such as module:create_app()"),
        ("readiness", spec.readiness, _PATH, "a URL path such as /readyz"),
        ("liveness", spec.liveness, _PATH, "a URL path such as /healthz"),
        ("admin_socket", spec.admin_socket, _SOCKET, "an absolute path"),
    ]
    rules += [(key, getattr(spec, key), _QUANTITY, "a Kubernetes quantity such as 250m or 256Mi")
              for key in ("cpu_request", "memory_request", "memory_limit")]
    if spec.image is not None:
        rules.append(("image", spec.image, _IMAGE, "an image reference REGISTRY/NAME:TAG"))
    if spec.secret:
        rules.append(("secret", spec.secret, _NAME, "a DNS label"))
    for key, value, pattern, what in rules:
        if not pattern.match(value):
            raise UsageError(f"{src(key)}: {key} {value!r} is not {what}")
    if len(spec.name) > MAX_NAME:
        raise UsageError(f"{src('name')}: name {spec.name!r} is over {MAX_NAME} characters")
    for key, (low, high) in _INTS.items():
        value = getattr(spec, key)
        if not low <= value <= high:
            raise UsageError(f"{src(key)}: {key} must be from {low} to {high}, not {value}"
                             + (" (one replica is a single point of failure)"
                                if key == "replicas" else ""))
    if spec.max_replicas and spec.max_replicas < spec.replicas:
        raise UsageError(f"{src('replicas')}: max_replicas {spec.max_replicas} is below replicas "
                         f"{spec.replicas}")
    _check_keys(spec, where)
    for server in spec.servers:
        parse_address(server, "a server")
    parse_address(spec.listen, "listen", port_only=True)


def _check_keys(spec: DeploySpec, where: str) -> None:
    for key in spec.secret_keys:
        if not _ENV_KEY.match(key):
            raise UsageError(f"{where}: secret_keys holds {key!r}, not an environment name")
    for key, value in spec.config.items():
        if not _ENV_KEY.match(key):
            raise UsageError(f"{where}: config key {key!r} is not an environment name")
        if key in spec.secret_keys:
            raise UsageError(f"{where}: {key} is in both config and secret_keys: keep it in "
                             "secret_keys only")
        if redact.is_secret_key(key) or redact.text(value) != value:
            raise UsageError(f"{where}: config holds {key}, a secret: a manifest is no place "
                             f"for it; list {key} in secret_keys and put its value in the "
                             "Secret")


def parse_address(value: str, what: str, *, port_only: bool = False) -> tuple[str, int]:
    """``HOST:PORT`` (or, with ``port_only``, a bare PORT: host "") checked, as (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep and port_only:
        host = ""
    elif not sep or not _HOST.match(host):
        raise UsageError(f"{what} {value!r} is not HOST:PORT (e.g. 10.0.0.11:8000)")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise UsageError(f"{what} {value!r} has no port from 1 to 65535")
    return host, int(port)


def _string(where: str, key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise UsageError(f"{where}: {key} must be a non-empty string")
    return value


def _int(where: str, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"{where}: {key} must be a whole number, not {value!r}")
    return value


def _strings(where: str, key: str, value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise UsageError(f"{where}: {key} must be a list of strings")
    return list(value)


def _command(where: str, value: Any) -> list[str]:
    """The worker's command: a string (split as a shell would, no shell features) or a list."""
    if value == "" or value == []:
        return []
    try:
        words = shlex.split(value) if isinstance(value, str) else _strings(where, "worker", value)
    except ValueError as exc:
        raise UsageError(f"{where}: worker {value!r} does not parse ({exc})") from None
    bad = [w for w in ([value] if isinstance(value, str) else words) if not _WORD.match(w)]
    if bad:
        raise UsageError(f"{where}: worker {bad[0]!r} holds a control character: write the "
                         "command on one line")
    return words


def _config(where: str, value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise UsageError(f"{where}: config must be a table of KEY = value")
    out: dict[str, str] = {}
    for key, item in value.items():
        if isinstance(item, bool):
            item = "true" if item else "false"
        if not isinstance(item, str | int | float):
            raise UsageError(f"{where}: config {key} must be a string or a number")
        out[str(key)] = str(item)
    return out
