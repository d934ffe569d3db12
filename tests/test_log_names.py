"""Every log event named in mm7/ follows one scheme, ``mm7.<area>.<event>`` (lower case, words
joined by ``_``), so that a log search or an alert rule can pick events by area. Read from the
source with ``ast``: every call of a logging method with a literal first argument on a logger
(``log``, ``self.log``, ``bound``, ``ex.log``, ...) or on one picked by level (``emit``)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mm7"
METHODS = {"debug", "info", "warning", "error", "exception", "critical"}
SCHEME = re.compile(r"mm7\.[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*")


def _is_logger(node: ast.expr) -> bool:
    name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", "")
    return name in {"log", "bound", "logger"}


def event_names() -> list[tuple[str, int, str]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and (
                    (
                        isinstance(node.func, ast.Attribute)
                        and node.func.attr in METHODS
                        and _is_logger(node.func.value)
                    )
                    # a logging method picked by level first: emit = log.info if ... else ...
                    or (isinstance(node.func, ast.Name) and node.func.id == "emit")
                )
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                # a stdlib message is "<event> key=%s ...": its first word is the event
                event = node.args[0].value.split(" ", 1)[0]
                found.append((str(path.relative_to(PACKAGE.parent)), node.lineno, event))
    return found


def test_the_walk_finds_the_events() -> None:
    events = {event for _, _, event in event_names()}
    # one of each kind of logger, so that a change of style cannot empty the test below
    for known in ("mm7.gateway.started", "mm7.dispatch.submitted", "mm7.relay.delivered"):
        assert known in events
    assert "mm7.codec.leniencies" in events and "mm7.inbound.wire" in events
    assert "mm7.client.error" in events


def test_every_event_name_follows_the_scheme() -> None:
    odd = [f"{path}:{line}: {event}" for path, line, event in event_names()]
    odd = [entry for entry in odd if not SCHEME.fullmatch(entry.rsplit(": ", 1)[1])]
    assert not odd, "event names not mm7.<area>.<event>:\n" + "\n".join(odd)
