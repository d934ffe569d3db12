"""Smoke test of tools/bench.py: the codec benchmark runs and prints one well-formed JSON object.

It checks the shape of the output and that every number is positive, never how big the numbers
are: the machines that run the tests are shared, so timings cannot gate a build.
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


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the benchmark script in a fresh interpreter, as CI and people do."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, str(BENCH), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=REPO,
        env=env,
    )


def test_codec_quick_json_shape() -> None:
    proc = _run("--only", "codec", "--quick", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)  # exactly one JSON document: extra output would fail here
    assert isinstance(data, dict)
    assert list(data) == ["codec"]
    codec = data["codec"]
    assert set(codec) == {"msgs_per_s", "vs_zeep_email", "vs_floor"}
    for key, value in codec.items():
        assert isinstance(value, int | float) and not isinstance(value, bool), (key, value)
        assert math.isfinite(value) and value > 0, (key, value)
    assert proc.stderr.strip(), "the human-readable report goes to stderr with --json"


def test_codec_small_quick_json_shape() -> None:
    proc = _run("--only", "codec_small", "--quick", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert list(data) == ["codec_small"]
    small = data["codec_small"]
    names = ("submit_rsp", "submit_rsp_mime", "report", "report_mime")
    assert set(small) == {f"{n}_{key}" for n in names for key in ("us", "vs_floor")}
    for key, value in small.items():
        assert isinstance(value, int | float) and not isinstance(value, bool), (key, value)
        assert math.isfinite(value) and value > 0, (key, value)


def test_unknown_benchmark_is_refused() -> None:
    proc = _run("--only", "codec,nonesuch", "--quick", "--json")
    assert proc.returncode == 2
    assert "nonesuch" in proc.stderr and "codec" in proc.stderr
    assert proc.stdout == ""


def test_scaling_quick_json_shape() -> None:
    proc = _run("--only", "scaling", "--quick", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert list(data) == ["scaling"]
    scaling = data["scaling"]
    kinds = {key.rsplit("_", 1)[0] for key in scaling if key.endswith("_exponent")}
    assert {"subject_rfc2047", "header_folding", "recipients", "smil_slides"} <= kinds
    assert set(scaling) == {f"{k}_exponent" for k in kinds} | {f"{k}_s_per_mb" for k in kinds}
    for key, value in scaling.items():
        assert isinstance(value, int | float) and not isinstance(value, bool), (key, value)
        assert math.isfinite(value), (key, value)
        if key.endswith("_s_per_mb"):
            assert value > 0, (key, value)
