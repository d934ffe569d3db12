"""`mm7 demo` as a newcomer runs it: a real subprocess, simulator and gateway on loopback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def _demo(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mm7.cli.main", "demo", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,  # a guard only: the demo bounds itself with --timeout
        check=False,
    )


def test_demo_shows_the_whole_mt_path_an_mo_relayed_and_the_sms_fallback(tmp_path: Path) -> None:
    done = _demo("--json", "--timeout", "60", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    summary = json.loads(lines[-1])
    assert summary["ok"] is True
    assert summary["message_id"] and summary["mm7_message_id"].startswith("sim-")
    assert summary["submit_status"] == {"code": 1000, "text": "Success"}
    assert summary["delivery_report_status"] == "Retrieved"
    assert summary["recipient_status"] == "delivered"
    assert sorted(summary["status_events"]) == ["delivery_report:delivered", "status:submitted"]
    assert summary["mo_id"] and summary["mo_text"] == "Thanks! Here is mine."
    assert summary["mo_media_bytes"] > 1000
    fallback = summary["sms_fallback"]
    assert fallback["recipient"] == "+12025550002" and fallback["status"] == "delivered"
    assert fallback["page_status"] == 200 and "/m/" in fallback["text"]
    assert fallback["text"].startswith("Your photo from the mm7 demo is here. http://127.0.0.1:")
    assert sorted(fallback["events"]) == ["delivered", "queued", "submitted"]  # at least once
    text = "\n".join(lines[:-1])
    for step in ("1. ", "2. ", "3. ", "4. ", "5. ", "6. ", "7. ", "8. ", "9. ", "10. "):
        assert step in text
    assert "image/jpeg" in text and "SubmitRsp 1000" in text
    assert list(tmp_path.iterdir()) == []  # the store was temporary
    # the demo sets [hosting] url_base to its API's address: no "guessed" warning in its output
    assert "url_base_guessed" not in done.stdout + done.stderr


def test_demo_without_json_has_no_json_line(tmp_path: Path) -> None:
    done = _demo("--timeout", "60", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not done.stdout.strip().splitlines()[-1].startswith("{")


def test_demo_that_cannot_finish_exits_1_with_the_reason(tmp_path: Path) -> None:
    done = _demo("--json", "--timeout", "0.001", cwd=tmp_path)
    assert done.returncode == 1
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["ok"] is False
    assert "not done within" in summary["error"]
    assert "FAILED" in done.stderr
    assert "Traceback" not in done.stderr
