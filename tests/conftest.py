"""Fixtures shared by several test modules (the helpers they use are in tests/helpers/).

A module that needs a variant defines its own fixture of the same name, which takes precedence
(test_store_retention's ``store`` puts media over 10 kB in files, test_metrics' has no clock,
test_relay_hooks' ``clock`` starts at its own START)."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from mm7.service.store import ManualClock, SqliteStore
from tests.helpers.simulator import Make, start_rig


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def store(tmp_path: Path, clock: ManualClock) -> AsyncIterator[SqliteStore]:
    s = await SqliteStore.open(tmp_path / "gw.db", clock=clock)
    yield s
    await s.close()


@pytest.fixture
def sim_rig(aiohttp_server: Callable[..., Awaitable[Any]]) -> Make:
    """Starts simulators: ``await sim_rig(persona, vasp, **config)`` (see ``start_rig``)."""
    return functools.partial(start_rig, aiohttp_server)
