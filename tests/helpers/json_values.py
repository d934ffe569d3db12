"""Generated JSON values and a canonical form to compare them, for the tests of the codecs that
stand in for the stdlib's ``json`` (tests/test_fastcodec.py, tests/test_store_jsontext.py)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from hypothesis import strategies as st

#: JSON-like values: big ints, non-finite floats and lone surrogates included
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(),  # lone surrogates included
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=12,
)


def canonical(value: Any) -> Any:
    """A form where NaN equals NaN and types count (1 != 1.0 != True)."""
    if isinstance(value, float):
        return ("float", "nan" if math.isnan(value) else repr(value))
    if isinstance(value, dict):
        return ("dict", [(k, canonical(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [canonical(v) for v in value])
    return (type(value).__name__, value)


def floats_in(value: Any) -> Iterator[float]:
    """Every float anywhere in ``value``."""
    if isinstance(value, float):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from floats_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from floats_in(item)
