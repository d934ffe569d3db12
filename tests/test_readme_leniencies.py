"""The README lists every leniency with the peer behaviour it answers: a new one without its row
fails here, so the interop section stays the full list."""

from __future__ import annotations

import re
from pathlib import Path

from mm7.core.leniency import Leniency

README = Path(__file__).resolve().parents[1] / "README.md"


def test_every_leniency_has_a_row_in_the_readme() -> None:
    rows = set(re.findall(r"^\| `([a-z0-9-]+)` \|", README.read_text(encoding="utf-8"), re.M))
    assert {x.value for x in Leniency} <= rows, sorted({x.value for x in Leniency} - rows)
