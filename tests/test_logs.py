"""configure_logging: structlog and the core's stdlib logging through one renderer, secrets masked.

Each test configures logging onto its own StringIO and the fixture restores the previous
structlog configuration and root-logger handlers, so other tests (capture_logs) are unaffected.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from mm7.core.codec import decode
from mm7.service.ops.logs import (
    REDACTED,
    configure_logging,
    is_secret_key,
    redact,
    unconfigure_logging,
)
from mm7.transport.flow import CircuitBreaker
from mm7.transport.link import Secret

BOOLEAN_TITLE_CASE = Path(__file__).parent / "fixtures" / "soap" / "boolean-title-case.xml"


@pytest.fixture
def out() -> Iterator[io.StringIO]:
    """A stream to log into; structlog and the root logger are restored afterwards."""
    saved = structlog.get_config()
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    stream = io.StringIO()
    try:
        yield stream
    finally:
        unconfigure_logging()
        structlog.configure(**saved)
        root.setLevel(level)
        for handler in handlers:
            if handler not in root.handlers:
                root.addHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    """Every line written, each parsed as JSON (a line that is not JSON fails the test)."""
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_json_lines_carry_timestamp_level_event_and_bound_context(out: io.StringIO) -> None:
    configure_logging("info", json=True, stream=out)
    log = structlog.get_logger("mm7.service.mt.dispatcher").bind(link="carrier-a")
    with structlog.contextvars.bound_contextvars(message_id="m-1", transaction_id="t-1"):
        log.info("mm7.submit.accepted", status_code=1000, recipients=["+15551230001"])
    log.debug("mm7.dropped")  # below the level: nothing

    [line] = lines(out)
    assert line["event"] == "mm7.submit.accepted"
    assert line["level"] == "info"
    assert line["logger"] == "mm7.service.mt.dispatcher"
    assert line["link"] == "carrier-a"
    assert line["message_id"] == "m-1"
    assert line["transaction_id"] == "t-1"
    assert line["status_code"] == 1000
    assert line["recipients"] == ["+15551230001"]
    assert line["timestamp"].endswith("Z")  # ISO 8601, UTC
    assert line["timestamp"][:4].isdigit() and "T" in line["timestamp"]


def test_the_transport_logs_through_the_renderer(out: io.StringIO) -> None:
    # a real transport object: the breaker binds the link and warns when it opens
    configure_logging("info", json=True, stream=out)
    breaker = CircuitBreaker(threshold=1, cooldown=60.0)
    breaker.bind(link="carrier-b")
    breaker.record_failure()
    [line] = lines(out)
    assert line["event"] == "mm7.breaker.open"
    assert line["level"] == "warning"
    assert line["link"] == "carrier-b"
    assert line["logger"] == "mm7.transport.flow"


def test_secrets_are_masked_anywhere_in_the_event(out: io.StringIO) -> None:
    configure_logging("debug", json=True, stream=out)
    log = structlog.get_logger("mm7.test")
    log.info(
        "mm7.login",
        password="hunter2",
        api_key="k-123456",
        headers={"Authorization": "Basic dXNlcjpodW50ZXIy", "Content-Type": "text/xml"},
        pairs=[("Proxy-Authorization", "Bearer tok-abc"), ("X-Other", "fine")],
        peer={"auth": {"type": "basic", "username": "vasp", "client_secret": "s3cr3t"}},
        access_token="tok-xyz",
        wrapped=Secret("never-shown"),
        username="vasp",
    )
    text = out.getvalue()
    for secret in (
        "hunter2",
        "k-123456",
        "dXNlcjpodW50ZXIy",
        "tok-abc",
        "s3cr3t",
        "tok-xyz",
        "never-shown",
    ):
        assert secret not in text
    [line] = lines(out)
    assert line["password"] == REDACTED
    assert line["api_key"] == REDACTED
    assert line["access_token"] == REDACTED
    assert line["headers"] == {"Authorization": REDACTED, "Content-Type": "text/xml"}
    assert line["pairs"] == [["Proxy-Authorization", REDACTED], ["X-Other", "fine"]]
    assert line["peer"]["auth"] == {"type": "basic", "username": "vasp", "client_secret": REDACTED}
    assert line["username"] == "vasp"  # not a secret


def test_secrets_in_bound_context_and_stdlib_extra_are_masked(out: io.StringIO) -> None:
    configure_logging("info", json=True, stream=out)
    with structlog.contextvars.bound_contextvars(token="ctx-token"):
        structlog.get_logger("mm7.test").bind(secret="bound-secret").info("mm7.one")
    logging.getLogger("mm7.core.test").warning("mm7.two", extra={"password": "extra-pass"})
    text = out.getvalue()
    assert "ctx-token" not in text and "bound-secret" not in text and "extra-pass" not in text
    one, two = lines(out)
    assert (one["token"], one["secret"]) == (REDACTED, REDACTED)
    assert (two["event"], two["password"]) == ("mm7.two", REDACTED)


def test_stdlib_core_debug_lines_come_through_the_same_renderer(out: io.StringIO) -> None:
    configure_logging("debug", json=True, stream=out)
    decode(BOOLEAN_TITLE_CASE.read_bytes(), "text/xml")  # the real core: logs its leniencies
    logging.getLogger("mm7.codec").debug("mm7.plain %s", "args")
    first, second = lines(out)
    assert first["logger"] == "mm7.codec"
    assert first["level"] == "debug"
    assert first["event"].startswith("mm7.codec.leniencies operation=")
    assert "transaction_id=ic-000001" in first["event"]
    assert "boolean-spelling" in first["event"]
    assert "timestamp" in first
    assert second["event"] == "mm7.plain args"


def test_stdlib_debug_lines_are_dropped_when_the_level_does_not_allow(out: io.StringIO) -> None:
    configure_logging("info", json=True, stream=out)
    decode(BOOLEAN_TITLE_CASE.read_bytes(), "text/xml")
    logging.getLogger("mm7.codec").debug("mm7.hidden")
    logging.getLogger("mm7.codec").info("mm7.shown")
    assert [line["event"] for line in lines(out)] == ["mm7.shown"]


def test_configure_is_idempotent(out: io.StringIO) -> None:
    first = io.StringIO()
    configure_logging("info", json=True, stream=first)
    configure_logging("info", json=True, stream=out)
    configure_logging("warning", json=True, stream=out)
    ours = [h for h in logging.getLogger().handlers if type(h).__name__ == "_GatewayHandler"]
    assert len(ours) == 1
    structlog.get_logger("mm7.test").info("mm7.below")
    structlog.get_logger("mm7.test").warning("mm7.once")
    logging.getLogger("mm7.codec").warning("mm7.stdlib.once")
    assert first.getvalue() == ""
    assert [line["event"] for line in lines(out)] == ["mm7.once", "mm7.stdlib.once"]


def test_a_call_below_the_level_runs_no_processor(out: io.StringIO) -> None:
    configure_logging("warning", json=True, stream=out)
    seen: list[str] = []

    def spy(logger: object, method_name: str, event_dict: Any) -> Any:
        seen.append(event_dict["event"])
        return event_dict

    # the spy first, before filter_by_level: it sees every event that is processed at all
    structlog.configure(processors=[spy, *structlog.get_config()["processors"]])
    log = structlog.get_logger("mm7.service.mt.dispatcher").bind(link="carrier-a")
    log.debug("mm7.below.debug")
    log.info("mm7.below.info")
    log.log(logging.INFO, "mm7.below.log")
    log.warning("mm7.kept")
    assert seen == ["mm7.kept"]
    assert [line["event"] for line in lines(out)] == ["mm7.kept"]


def test_a_disabled_stdlib_logger_drops_as_filter_by_level_does(out: io.StringIO) -> None:
    configure_logging("debug", json=True, stream=out)
    stdlib = logging.getLogger("mm7.test.disabled")
    stdlib.disabled = True
    try:
        structlog.get_logger("mm7.test.disabled").error("mm7.hidden")
    finally:
        stdlib.disabled = False
    structlog.get_logger("mm7.test.disabled").error("mm7.shown")
    assert [line["event"] for line in lines(out)] == ["mm7.shown"]


def test_a_later_configuration_reaches_loggers_already_bound(out: io.StringIO) -> None:
    configure_logging("warning", json=True, stream=out)
    log = structlog.get_logger("mm7.service.mt.dispatcher").bind(link="carrier-a")
    log.info("mm7.before")
    configure_logging("debug", json=True, stream=out)
    log.debug("mm7.after")
    assert [line["event"] for line in lines(out)] == ["mm7.after"]
    # and capture_logs (processors without filter_by_level) keeps every level again
    configure_logging("warning", json=True, stream=out)
    with structlog.testing.capture_logs() as captured:
        structlog.get_logger("mm7.service.mt.dispatcher").debug("mm7.captured")
    assert [entry["event"] for entry in captured] == ["mm7.captured"]


def test_console_renderer_for_development(out: io.StringIO) -> None:
    configure_logging("info", json=False, stream=out)
    structlog.get_logger("mm7.test").info("mm7.hello", link="carrier-a", password="hunter2")
    logging.getLogger("mm7.codec").warning("mm7.core.says")
    text = out.getvalue()
    assert "mm7.hello" in text and "link=carrier-a" in text and "mm7.core.says" in text
    assert "hunter2" not in text
    assert "\x1b[" not in text  # no colours into a file
    assert not text.lstrip().startswith("{")


def test_unknown_level_is_refused(out: io.StringIO) -> None:
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        configure_logging("loud", json=True, stream=out)


def test_exceptions_are_rendered_into_the_json_line(out: io.StringIO) -> None:
    configure_logging("info", json=True, stream=out)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        structlog.get_logger("mm7.test").exception("mm7.failed", link="carrier-a")
    [line] = lines(out)
    assert line["event"] == "mm7.failed" and line["level"] == "error"
    assert "RuntimeError: boom" in line["exception"]


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("password", True),
        ("Password", True),
        ("key_password", True),
        ("secret", True),
        ("media_url_secret", True),
        ("token", True),
        ("access-token", True),
        ("Authorization", True),
        ("proxy_authorization", True),
        ("api_key", True),
        ("X-Api-Key", True),
        ("dsn", True),
        ("transaction_id", False),
        ("message_id", False),
        ("link", False),
        ("username", False),
        ("idempotency_key", False),
        ("tokens_used", False),
        ("event", False),
    ],
)
def test_which_keys_are_secret(key: str, secret: bool) -> None:
    assert is_secret_key(key) is secret


def test_redact_copies_and_never_mutates() -> None:
    original = {"auth": {"password": "p"}, "list": [{"token": "t"}], "pair": ("secret", "s")}
    masked = redact(original)
    assert masked == {
        "auth": {"password": REDACTED},
        "list": [{"token": REDACTED}],
        "pair": ("secret", REDACTED),
    }
    assert original["auth"] == {"password": "p"}
    assert redact({"password": None}) == {"password": None}  # "no password" is not a secret
