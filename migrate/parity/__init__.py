"""Parity across instances: a team's own Flask tests, run against N real instances of its app.

``migrate.parity.plugin`` is the pytest plugin (entry point ``pytest11``); ``Instances``
starts N gunicorn instances of any app on shared stores; ``InstanceClient`` is Flask's test
client API over HTTP to them; ``verify_app`` runs a suite on 1 and on N instances and says
which tests only pass on one (``migrate verify instances --app``). Names load lazily: the
plugin is imported by every pytest run in the environment and must cost nothing when off.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "ParitySettings": "settings",
    "parse_env": "settings",
    "Instances": "instances",
    "InstanceInfo": "instances",
    "Kill": "instances",
    "SharedStores": "stores",
    "InstanceClient": "client",
    "NotAcrossInstances": "client",
    "RequestRecord": "client",
    "verify_app": "verify",
    "AppVerifyResult": "verify",
    "TestOutcome": "verify",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
