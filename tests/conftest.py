"""Fixtures shared by several test modules (the helpers they use are in tests/helpers/).

A module that needs a variant defines its own fixture of the same name, which takes precedence
(test_store_retention's ``store`` puts media over 10 kB in files, test_metrics' has no clock,
test_relay_hooks' ``clock`` starts at its own START). The store tests run on each backend
through ``backend`` and ``any_store``."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from mm7.service.store import ManualClock, SqliteStore, Store
from tests.helpers.simulator import Make, start_rig
from tests.helpers.stores import BACKENDS, Backend, backend_of


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def store(tmp_path: Path, clock: ManualClock) -> AsyncIterator[SqliteStore]:
    s = await SqliteStore.open(tmp_path / "gw.db", clock=clock)
    yield s
    await s.close()


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """A database of each backend (tests/helpers/stores.py): SQLite in tmp_path, PostgreSQL
    fresh on the test server (skipped, saying why, when none can be reached)."""
    async with backend_of(request.param, tmp_path) as made:
        yield made


@pytest.fixture
async def any_store(backend: Backend, clock: ManualClock) -> Store:
    """A store of each backend on the ManualClock; a module runs its store tests on both by
    defining ``store`` as this."""
    return await backend.open(clock=clock)


@pytest.fixture
def sim_rig(aiohttp_server: Callable[..., Awaitable[Any]]) -> Make:
    """Starts simulators: ``await sim_rig(persona, vasp, **config)`` (see ``start_rig``)."""
    return functools.partial(start_rig, aiohttp_server)
