"""Smoke test of the ``content`` benchmark in tools/bench.py: it runs and prints one JSON object
of the documented shape.

Only the shape is checked and that every number is positive, never how big the numbers are: the
machines that run the tests are shared, so timings cannot gate a build.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "tools" / "bench.py"


def test_content_quick_json_shape() -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--only", "content", "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=REPO,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)  # exactly one JSON document: extra output would fail here
    assert isinstance(data, dict) and list(data) == ["content"]
    content = data["content"]
    assert set(content) == {"fit_s", "vs_pillow_naive", "peak_mb", "naive_s", "naive_peak_mb"}
    for key, value in content.items():
        assert isinstance(value, int | float) and not isinstance(value, bool), (key, value)
        assert math.isfinite(value) and value > 0, (key, value)
    assert "mms-300k" in proc.stderr, "the human-readable report goes to stderr with --json"
