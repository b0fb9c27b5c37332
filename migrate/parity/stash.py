"""Where the plugin keeps its per-run and per-test state (pytest stash keys)."""

from __future__ import annotations

from typing import Any

import pytest

STATE = pytest.StashKey[Any]()  # the run's _Parity
CLIENTS = pytest.StashKey[list]()  # a test's instance clients, in the order it made them
OFFSETS = pytest.StashKey[list]()  # where each instance's log ended when the test began
