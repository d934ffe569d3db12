"""A dialect as a ``[dialects.NAME]`` TOML table, ready to paste into conf/dialects.toml (the
gateway's loader reads it: ``mm7.service.config.loader``), with comments above it.

    text = dialect_table("carrier-a", {"extends": "3gpp", "version": "REL-6-MM7-1-4"},
                         comments=["probed on 2024-05-01"])

Values are strings and booleans (what ``Dialect.from_mapping`` takes for the keys the probe
sets); strings are written as TOML basic strings with every control character escaped, so a
peer's text in ``notes`` cannot end the string or the line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from mm7.core.dialect import DIALECTS
from mm7.interop.errors import InteropError
from mm7.interop.peer_text import peer_text

__all__ = ["check_name", "dialect_table", "toml_string"]

#: a TOML bare key: the names the probe writes need no quoting
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def check_name(name: str) -> str:
    """``name`` when it can name a dialect in conf/dialects.toml; InteropError says why not."""
    if not _BARE_KEY.fullmatch(name):
        raise InteropError(
            f"--dialect-name: {name!r} must be letters, digits, '-' and '_' (a TOML bare key)"
        )
    if name in DIALECTS:
        raise InteropError(f"--dialect-name: {name!r} is the name of a built-in dialect")
    return name


def toml_string(value: str) -> str:
    """``value`` as a TOML basic string: quotes, backslashes and control characters escaped."""
    out = ['"']
    for c in value:
        if c in '"\\':
            out.append("\\" + c)
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


def _value(key: str, value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return toml_string(value)
    raise InteropError(f"dialect key {key}: cannot write {type(value).__name__} values")


def dialect_table(name: str, keys: Mapping[str, object], comments: Sequence[str] = ()) -> str:
    """The ``[dialects.NAME]`` table, each comment line ``# ...`` above it."""
    check_name(name)
    lines = [f"# {peer_text(c, 300)}" for c in comments]
    lines.append(f"[dialects.{name}]")
    lines.extend(f"{key} = {_value(key, value)}" for key, value in keys.items())
    return "\n".join(lines) + "\n"
