"""The JSON text the store keeps and the relay sends (mm7.service.store.jsontext): written by
orjson when installed, the stdlib otherwise (forced here), the same values as ``json`` writes;
where they differ, the rules of the module's docstring. Compared with the stdlib on generated
values."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given

from mm7.service.store import jsontext
from tests.helpers.json_values import canonical, floats_in, json_values

FAST = jsontext._orjson is not None


@pytest.fixture(params=["orjson", "json"])
def library(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Each test with orjson (skipped without the extra), then with the stdlib forced."""
    if request.param == "orjson" and not FAST:
        pytest.skip("orjson not installed (pip install 'mm7[fast]')")
    if request.param == "json":
        monkeypatch.setattr(jsontext, "_orjson", None)
    yield request.param


def _finite(value: Any) -> bool:
    return all(map(math.isfinite, floats_in(value)))


@given(value=json_values.filter(_finite))
def test_what_is_written_reads_back_as_the_same_value(value: Any) -> None:
    text = jsontext.dumps(value)
    assert canonical(json.loads(text)) == canonical(value)
    assert jsontext.dumps_bytes(value) == text.encode("utf-8", "surrogatepass")


def test_what_orjson_refuses_to_write_json_writes(library: str) -> None:
    value = {"big": 2**70, "lone": "\ud800", "keys": {1: True, None: 2}}
    assert json.loads(jsontext.dumps(value)) == json.loads(json.dumps(value))


def test_a_float_json_cannot_hold_is_written_null_with_orjson() -> None:
    if not FAST:
        pytest.skip("orjson not installed")
    assert json.loads(jsontext.dumps({"x": math.nan, "y": math.inf})) == {"x": None, "y": None}


@dataclasses.dataclass
class _Record:
    a: int = 1


@pytest.mark.parametrize("value", [_Record(), datetime(2026, 12, 7, tzinfo=UTC), {1, 2}, object()])
def test_what_json_refuses_is_refused(library: str, value: Any) -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        jsontext.dumps({"v": value})
