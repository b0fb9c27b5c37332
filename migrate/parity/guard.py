"""The suite's own Flask app, in a test whose requests go to the instances.

A suite's ``app`` fixture still builds an app in the test's process; the instances run their
own. Two things a test does with that app would silently stop meaning anything, so they change:

- ``app.test_client()`` gives an instance client (a second user, as the test meant);
- setting ``app.config[...]`` (or ``update``/``pop``/``del``) fails with one line: the
  instances never see it; ``--app-env KEY=VALUE`` is how they get configuration.

Reading ``app.config``, ``app.app_context()`` and ``app.test_request_context()`` still work:
they act on the test's own app and whatever stores it points at, which the instances share
only when the suite points it at the same ones (``instances.stores``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .client import NotAcrossInstances

_GUARDED: dict[type, type] = {}


def guard_flask_app(value: Any, make_client: Callable[[], Any]) -> None:
    """Guard ``value`` in place when it is a Flask app; anything else is left alone."""
    try:
        from flask import Flask
    except ImportError:
        return
    if not isinstance(value, Flask) or getattr(value, "_migrate_parity_guarded", False):
        return

    def test_client(*args: Any, **kwargs: Any) -> Any:
        return make_client()

    value.test_client = test_client  # type: ignore[method-assign]
    value.config.__class__ = _guarded(type(value.config))
    value._migrate_parity_guarded = True  # type: ignore[attr-defined]


def _refuse(keys: Any) -> NotAcrossInstances:
    names = ", ".join(str(k) for k in keys) or "?"
    first = next(iter(keys), "KEY")
    return NotAcrossInstances(
        f"app.config[{names}] set in the test changes the app in the test's process only; the "
        f"instances run their own: give it to them with --app-env {first}=VALUE (or test it "
        "without the instance client)")


def _guarded(config_class: type) -> type:
    if config_class in _GUARDED:
        return _GUARDED[config_class]

    class GuardedConfig(config_class):  # type: ignore[misc,valid-type]
        def __setitem__(self, key: Any, value: Any) -> None:
            raise _refuse([key])

        def __delitem__(self, key: Any) -> None:
            raise _refuse([key])

        def update(self, *args: Any, **kwargs: Any) -> None:
            raise _refuse(list(dict(*args, **kwargs)))

        def pop(self, key: Any, *default: Any) -> Any:
            raise _refuse([key])

    GuardedConfig.__name__ = GuardedConfig.__qualname__ = f"Guarded{config_class.__name__}"
    _GUARDED[config_class] = GuardedConfig
    return GuardedConfig
