"""Reading one TOML table into typed values, with errors that name the file and the key path.

``mm7.service.config`` builds the gateway configuration with these helpers. A ``Table`` wraps one
TOML table and the dotted path that leads to it (``links.carrier-a.auth``); every getter checks
the type and range of one key and raises ``ConfigError`` as ``<file>: <path>.<key>: <problem>``.
``Table.finish()`` then refuses every key nobody asked for, by name (with a "did you mean"), so a
typo never passes silently.

Secrets (``Table.secret``) are read from the key itself or from the environment variable named by
``<key>_env``; the value is never put in an error message, whatever went wrong with it.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mm7.service.errors import ConfigError
from mm7.transport.link import Secret

__all__ = ["ENV_SUFFIX", "ConfigError", "Context", "Table", "show"]

#: the suffix of the key that names an environment variable holding a secret
ENV_SUFFIX = "_env"

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: a sign is read so that "-5m" is refused as negative rather than as unreadable
_DURATION = re.compile(r"\s*(-?\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def show(value: object) -> str:
    """A value as the error message quotes it: TOML-like (strings in double quotes), bounded."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str | int | float):
        text = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, Mapping):
        text = "a table"
    elif isinstance(value, list | tuple):
        text = "a list"
    else:
        text = type(value).__name__
    return text if len(text) <= 80 else text[:77] + "..."


class Context:
    """What every table of one load shares: the file (for messages) and the environment."""

    def __init__(self, source: Path, env: Mapping[str, str]) -> None:
        self.source = source
        self.env = env

    def error(self, path: str, problem: str) -> ConfigError:
        """The error for ``path``: ``<file>: <path>: <problem>`` (no path: the file alone)."""
        where = f"{self.source}: {path}: " if path else f"{self.source}: "
        return ConfigError(where + problem)


class Table:
    """One TOML table being read: typed getters by key, then ``finish()`` refuses the rest."""

    def __init__(self, data: Mapping[str, Any], path: str, ctx: Context) -> None:
        self.data = data
        self.path = path
        self.ctx = ctx
        self._used: set[str] = set()

    # -- plumbing

    def key_path(self, key: str) -> str:
        """The dotted path of ``key`` in this table (``links.carrier-a.tps``)."""
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str | None, problem: str) -> ConfigError:
        """An error about ``key`` of this table (None: about the table itself)."""
        return self.ctx.error(self.key_path(key) if key else self.path, problem)

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str) -> Any:
        """The untyped value (marks the key used); None when absent."""
        self._used.add(key)
        return self.data.get(key)

    def _bad(self, key: str, want: str) -> ConfigError:
        return self.error(key, f"expected {want}, got {show(self.data[key])}")

    def finish(self) -> None:
        """Refuse every key that was not read: a typo must not pass silently."""
        unknown = sorted(set(self.data) - self._used)
        if not unknown:
            return
        known = sorted(self._used)
        key = unknown[0]
        hint = difflib.get_close_matches(key, known, n=1)
        more = f" (and {', '.join(unknown[1:])})" if len(unknown) > 1 else ""
        suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
        listing = f" (known keys: {', '.join(known)})" if known and not hint else ""
        raise self.error(key, f"unknown key{more}{suggestion}{listing}")

    # -- typed getters

    def opt_str(self, key: str, *, choices: tuple[str, ...] = ()) -> str | None:
        """A string, or None when absent; ``choices`` restricts the values."""
        value = self.raw(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self._bad(key, "a string")
        if choices and value not in choices:
            raise self.error(key, f"expected one of {', '.join(choices)}; got {show(value)}")
        return value

    def req_str(self, key: str, *, choices: tuple[str, ...] = ()) -> str:
        """A string that must be there (and not be empty)."""
        value = self.opt_str(key, choices=choices)
        if value is None:
            raise self.error(key, "missing (required)")
        if not value.strip():
            raise self.error(key, "must not be empty")
        return value

    def str_default(self, key: str, default: str, *, choices: tuple[str, ...] = ()) -> str:
        value = self.opt_str(key, choices=choices)
        return default if value is None else value

    def boolean(self, key: str, default: bool) -> bool:
        """true/false (the strings "true" and "false" are refused: they are not booleans)."""
        value = self.raw(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self._bad(key, "true or false")
        return value

    def opt_int(self, key: str, *, minimum: int = 1) -> int | None:
        """An integer >= ``minimum``, or None when absent."""
        value = self.raw(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._bad(key, f"an integer >= {minimum}")
        if value < minimum:
            raise self._bad(key, f"an integer >= {minimum}")
        return value

    def integer(self, key: str, default: int, *, minimum: int = 1) -> int:
        value = self.opt_int(key, minimum=minimum)
        return default if value is None else value

    def opt_number(self, key: str, *, allow_zero: bool = False) -> float | None:
        """A positive (or, with ``allow_zero``, non-negative) finite number; None when absent."""
        value = self.raw(key)
        if value is None:
            return None
        want = "a number >= 0" if allow_zero else "a positive number"
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._bad(key, want)
        number = float(value)
        if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
            raise self._bad(key, want)
        return number

    def number(self, key: str, default: float, *, allow_zero: bool = False) -> float:
        value = self.opt_number(key, allow_zero=allow_zero)
        return default if value is None else value

    def duration(self, key: str, default: float, *, allow_zero: bool = False) -> float:
        """Seconds: a number, or a string with a unit ("500ms", "30s", "5m", "48h", "2d")."""
        value = self.raw(key)
        if value is None:
            return default
        want = 'a duration (seconds, or a string like "30s", "5m", "48h")'
        if isinstance(value, str):
            match = _DURATION.fullmatch(value)
            if match is None:
                raise self._bad(key, want)
            seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2) or "s"]
        elif isinstance(value, int | float) and not isinstance(value, bool):
            seconds = float(value)
        else:
            raise self._bad(key, want)
        if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
            kind = "a duration of 0 or more" if allow_zero else "a positive duration"
            raise self._bad(key, want.replace("a duration", kind))
        return seconds or 0.0  # "-0" is 0

    def str_list(
        self, key: str, *, pattern: re.Pattern[str] | None = None, what: str = ""
    ) -> tuple[str, ...]:
        """A list of non-empty strings (a single string is refused: write ["x"]).

        ``pattern`` must match every item in full; ``what`` says what an item is, for the message.
        """
        value = self.raw(key)
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self._bad(key, "a list of strings")
        items: list[str] = []
        for index, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                raise self.ctx.error(
                    f"{self.key_path(key)}[{index}]",
                    f"expected a non-empty string, got {show(item)}",
                )
            if pattern is not None and not pattern.fullmatch(item):
                raise self.ctx.error(
                    f"{self.key_path(key)}[{index}]",
                    f"expected {what or 'a valid item'}, got {show(item)}",
                )
            items.append(item)
        return tuple(items)

    def opt_table(self, key: str) -> Table | None:
        """A sub-table, or None when absent."""
        value = self.raw(key)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise self._bad(key, "a table")
        return Table(value, self.key_path(key), self.ctx)

    def table(self, key: str) -> Table:
        """A sub-table; an absent one reads as empty (every key at its default)."""
        found = self.opt_table(key)
        return found if found is not None else Table({}, self.key_path(key), self.ctx)

    def named_tables(self, key: str) -> list[tuple[str, Table]]:
        """``[key.NAME]`` tables or ``[[key]]`` array items with a ``name``: (name, table) in order.

        Names must be unique and look like identifiers (letters, digits, ``-``, ``_``, ``.``).
        """
        value = self.raw(key)
        if value is None:
            return []
        out: list[tuple[str, Table]] = []
        if isinstance(value, Mapping):
            for name, item in value.items():
                where = f"{self.key_path(key)}.{name}"
                if not isinstance(item, Mapping):
                    raise self.ctx.error(where, f"expected a table, got {show(item)}")
                _check_name(self.ctx, where, name)
                out.append((name, Table(item, where, self.ctx)))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                where = f"{self.key_path(key)}[{index}]"
                if not isinstance(item, Mapping):
                    raise self.ctx.error(where, f"expected a table, got {show(item)}")
                name = item.get("name")
                if not isinstance(name, str):
                    raise self.ctx.error(f"{where}.name", "missing (required in a [[...]] list)")
                _check_name(self.ctx, f"{where}.name", name)
                table = Table(item, f"{self.key_path(key)}.{name}", self.ctx)
                table.raw("name")
                out.append((name, table))
        else:
            raise self._bad(key, "tables ([key.NAME] or [[key]])")
        seen: set[str] = set()
        for name, table in out:
            if name in seen:
                raise self.ctx.error(table.path, f"duplicate name {show(name)}")
            seen.add(name)
        return out

    def secret(self, key: str, *, required: bool) -> Secret | None:
        """A secret from ``key`` or from the environment variable ``<key>_env`` names.

        Giving both is refused (which one wins would be a guess); an ``_env`` naming a variable
        that is not set, or set to the empty string, is refused naming the key and the variable.
        The value itself never appears in a message.
        """
        env_key = key + ENV_SUFFIX
        inline = self.raw(key)
        env_name = self.raw(env_key)
        if inline is not None and env_name is not None:
            raise self.error(key, f"give {key} or {env_key}, not both")
        if env_name is not None:
            if not isinstance(env_name, str) or not _ENV_NAME.fullmatch(env_name):
                raise self._bad(env_key, "an environment variable name (A-Z, 0-9, _)")
            value = self.ctx.env.get(env_name)
            if value is None:
                raise self.error(env_key, f"environment variable {env_name} is not set")
            if not value:
                raise self.error(env_key, f"environment variable {env_name} is empty")
            return Secret(value)
        if inline is not None:
            if not isinstance(inline, str):
                # never show the value: it may be a secret typed as a number
                raise self.error(key, "expected a string (the value is not shown)")
            if not inline:
                raise self.error(key, "must not be empty")
            return Secret(inline)
        if required:
            raise self.error(key, f"missing: give {key} or {env_key}")
        return None

    def env_named(self, key: str) -> str | None:
        """The environment variable ``<key>_env`` names, or None (already validated by secret)."""
        value = self.data.get(key + ENV_SUFFIX)
        return value if isinstance(value, str) else None


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")


def _check_name(ctx: Context, where: str, name: str) -> None:
    if not _NAME.fullmatch(name):
        raise ctx.error(where, f"{show(name)} is not a valid name (letters, digits, - _ .)")
