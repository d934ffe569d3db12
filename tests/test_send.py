"""`mm7 send` against a gateway running in this process (real sockets, real SQLite).

The command is synchronous (urllib), so it runs in a thread while the gateway serves on the
test's event loop."""

from __future__ import annotations

import asyncio
import io
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from mm7.cli.main import main
from mm7.service.config.loader import load_config
from mm7.service.runtime import Gateway
from tests.helpers.runtime import KEY, bound_socket, write_config


def jpeg_file(tmp_path: Path) -> Path:
    out = io.BytesIO()
    Image.new("RGB", (20, 20), (0, 120, 200)).save(out, "JPEG")
    path = tmp_path / "photo.jpg"
    path.write_bytes(out.getvalue())
    return path


async def test_send_to_a_list_queues_one_message_each(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with bound_socket() as mmsc:  # never listening: the messages stay queued, which is enough
        config = load_config(write_config(tmp_path, mmsc.getsockname()[1]), env={})
        gateway = Gateway(config, configure_logs=False, poll_interval=3600, announce=lambda x: None)
        await gateway.start()
        try:
            assert gateway.api_url is not None and gateway.store is not None
            port = gateway.api_url.rsplit(":", 1)[1]
            # what an operator's copy of the config says: the API's real port
            sender_conf = tmp_path / "sender.toml"
            sender_conf.write_text(f'[api]\nlisten = "127.0.0.1:{port}"\n')
            numbers = tmp_path / "numbers.txt"
            numbers.write_text("# the list\n+12025550001\n\n+12025550002  # two\n+12025550003\n")
            monkeypatch.setenv("MM7_API_KEY", KEY)
            media = jpeg_file(tmp_path)
            argv = ["send", "--config", str(sender_conf), "--to-file", str(numbers),
                    "--text", "hello all", "--subject", "news", "--media", str(media)]  # fmt: skip
            status = await asyncio.to_thread(main, argv)
            out, err = capsys.readouterr()
            assert status == 0, err
            # stderr is not a terminal here: no progress bar at all
            assert err == "" and "\r" not in out and "3/3" not in out
            # (stdout also carries structlog's default output: logging is not configured here)
            rows = [line.split() for line in out.splitlines() if line.startswith("+")]
            assert [r[0] for r in rows] == ["+12025550001", "+12025550002", "+12025550003"]
            for address, message_id in rows:
                record = await gateway.store.get_message(message_id)
                assert record is not None
                assert [r.address for r in record.recipients] == [address]
                assert record.fields.get("subject") == "news"
                types = [p.content_type.split(";")[0] for p in record.parts]
                assert "image/jpeg" in types and "text/plain" in types
        finally:
            await gateway.stop()


async def test_send_one_with_a_wrong_key_or_bad_input_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MM7_API_KEY", raising=False)
    with bound_socket() as mmsc:
        config = load_config(write_config(tmp_path, mmsc.getsockname()[1]), env={})
        gateway = Gateway(config, configure_logs=False, poll_interval=3600, announce=lambda x: None)
        await gateway.start()
        try:
            api = str(gateway.api_url)
            base = ["send", "--api-url", api, "--text", "hi"]
            status = await asyncio.to_thread(
                main, [*base, "--api-key", "wrong", "--to", "+12015550100"]
            )
            _, err = capsys.readouterr()
            assert status == 2 and "HTTP 401" in err

            status = await asyncio.to_thread(
                main, [*base, "--api-key", KEY, "--to", "not a number!"]
            )
            _, err = capsys.readouterr()
            assert status == 2 and "HTTP 422" in err and "to" in err

            status = await asyncio.to_thread(main, [*base, "--to", "+12025550001"])
            _, err = capsys.readouterr()
            assert status == 2 and "MM7_API_KEY" in err

            # a list where one is refused: the others go, exit 1, the reason named
            status = await asyncio.to_thread(
                main, [*base, "--api-key", KEY, "--to", "+12025550001", "--to", "bad address!"]
            )
            out, err = capsys.readouterr()
            assert status == 1
            assert "+12025550001 " in out and "bad address!" in err and "1 of 2 refused" in err
        finally:
            await gateway.stop()


async def test_send_prints_the_field_the_api_names_as_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API's 422 names the field it refused as the request gave it: ``to`` for the one
    recipient of a message per recipient (a string), ``to[0]`` in a campaign (a list). ``mm7
    send`` prints that name, the API's message and the HTTP status, and nothing else."""
    monkeypatch.setenv("MM7_API_KEY", KEY)
    with bound_socket() as mmsc:
        config = load_config(write_config(tmp_path, mmsc.getsockname()[1]), env={})
        gateway = Gateway(config, configure_logs=False, poll_interval=3600, announce=lambda x: None)
        await gateway.start()
        try:
            base = ["send", "--api-url", str(gateway.api_url), "--text", "hi", "--to", "+1"]
            for extra, field in (([], "to"), (["--one-message"], "to[0]")):
                status = await asyncio.to_thread(main, [*base, *extra])
                _, err = capsys.readouterr()
                assert status == 2
                assert err.strip() == (
                    f"mm7 send: the API answered HTTP 422: {field}: '+1': not a phone number"
                )
        finally:
            await gateway.stop()


def test_send_needs_content_and_a_reachable_gateway(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["send", "--api-key", "k", "--to", "+12025550001"])
    assert status == 2 and "nothing to send" in capsys.readouterr().err
    with bound_socket() as closed:  # bound, not listening: connection refused
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
        status = main(
            ["send", "--api-url", url, "--api-key", "k", "--to", "+12015550100", "--text", "x"]
        )
    assert status == 2 and "cannot reach the gateway API" in capsys.readouterr().err


async def test_send_one_message_to_a_list(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with bound_socket() as mmsc:
        config = load_config(write_config(tmp_path, mmsc.getsockname()[1]), env={})
        gateway = Gateway(config, configure_logs=False, poll_interval=3600, announce=lambda x: None)
        await gateway.start()
        try:
            assert gateway.api_url is not None and gateway.store is not None
            numbers = tmp_path / "numbers.txt"
            numbers.write_text("".join(f"+1202555{n:04d}\n" for n in range(250)))
            monkeypatch.setenv("MM7_API_KEY", KEY)
            media = str(jpeg_file(tmp_path))
            argv = ["send", "--api-url", gateway.api_url, "--to-file", str(numbers),
                    "--one-message", "--text", "campaign", "--media", media]  # fmt: skip
            status = await asyncio.to_thread(main, argv)
            out, err = capsys.readouterr()
            assert status == 0, err
            (line,) = [x for x in out.splitlines() if x.endswith("250 recipients")]
            record = await gateway.store.get_message(line.split()[0])
            assert record is not None and len(record.recipients) == 250
            assert record.fields["recipient_count"] == 250 and len(record.fields["to"]) == 100
            assert len({p.sha256 for p in record.parts}) == len(record.parts)
        finally:
            await gateway.stop()


async def test_send_progress_is_drawn_on_a_terminal_and_never_mixes_with_the_output(
    tmp_path: Path,
) -> None:
    with bound_socket() as mmsc:
        config = load_config(write_config(tmp_path, mmsc.getsockname()[1]), env={})
        gateway = Gateway(config, configure_logs=False, poll_interval=3600, announce=lambda x: None)
        await gateway.start()
        try:
            argv = [sys.executable, "-m", "mm7.cli.main", "send", "--api-url",
                    str(gateway.api_url), "--api-key", KEY, "--text", "hi", "--to",
                    "+12025550001", "--to", "not a number", "--to", "+12025550003"]  # fmt: skip
            # stdout a pipe, stderr a terminal: the bar on the terminal, stdout clean
            out, tty = await asyncio.to_thread(run_on_terminal, argv, stdout_too=False)
            assert [line.split()[0] for line in out.splitlines()] == [
                "+12025550001",
                "+12025550003",
            ]
            assert "\r" not in out and "[" not in out
            assert "mm7 send: [" in tty and "3/3, 1 refused" in tty
            assert "mm7 send: not a number:" in tty
            # both on one terminal: every line is written on a wiped line, after the bar
            _, both = await asyncio.to_thread(run_on_terminal, argv, stdout_too=True)
            for text in (r"\+12025550001 \S+", r"\+12025550003 \S+", "mm7 send: not a number: "):
                assert re.search(r"(^|\r\x1b\[K)" + text, both), (text, both)
            assert "\r\x1b[Kmm7 send: 1 of 3 refused" in both  # the bar wiped at the end
        finally:
            await gateway.stop()


def run_on_terminal(argv: list[str], *, stdout_too: bool) -> tuple[str, str]:
    """Run ``argv`` with stderr (and stdout when ``stdout_too``) on a pseudo-terminal; (what
    stdout's pipe got, what the terminal got)."""
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=follower if stdout_too else subprocess.PIPE,
            stderr=follower,
            env={k: v for k, v in os.environ.items() if not k.startswith("MM7_")},
        )
        os.close(follower)
        follower = -1
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal closed: every writer has exited
                break
            if not chunk:
                break
            chunks.append(chunk)
        out = proc.stdout.read().decode() if proc.stdout is not None else ""
        if proc.stdout is not None:
            proc.stdout.close()
        assert proc.wait(timeout=60) == 1  # one recipient refused
    finally:
        os.close(leader)
        if follower != -1:
            os.close(follower)
    return out, b"".join(chunks).decode()
