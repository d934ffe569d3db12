"""Running the `mm7` command in tests: in-process through ``main`` (``run``) or as the installed
console script in a subprocess (``run_cli``), and the check that a failure is one stderr line."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mm7.cli.main import EXIT_UNREADABLE, main


def _console_script() -> list[str]:
    """The installed `mm7` command; `python -m mm7.cli.main` when the venv lacks the script."""
    script = Path(sys.executable).with_name("mm7")
    if script.is_file():
        return [str(script)]
    found = shutil.which("mm7")
    return [found] if found else [sys.executable, "-m", "mm7.cli.main"]


MM7 = _console_script()


def run_cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run the real `mm7` command in a subprocess (no shell), capturing both streams."""
    return subprocess.run([*MM7, *args], input=stdin, capture_output=True, timeout=60, check=False)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run ``main(args)`` in-process: (exit status, stdout, stderr)."""
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_failure(code: int, out: str, err: str, command: str) -> str:
    """Exit 2, nothing on stdout, exactly one line on stderr naming the command, no traceback."""
    assert code == EXIT_UNREADABLE, (code, err)
    assert out == ""
    assert "Traceback" not in err
    assert err.endswith("\n") and err.count("\n") == 1, repr(err)
    assert err.startswith(f"mm7 {command}: ") or err.startswith(f"mm7 {command}:"), err
    return err.strip()
