"""conf/gateway.toml stays the key reference: every key the loader reads is in it, and every
commented ``# key = value`` that is not an "e.g." example states the dataclass default."""

from __future__ import annotations

import ast
import dataclasses
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from mm7.content.profile import parse_size
from mm7.core.dialect import DIALECTS, Dialect
from mm7.core.limits import DEFAULT_LIMITS
from mm7.service.config import loader
from mm7.service.config.reader import ENV_SUFFIX, Context, Table
from mm7.service.config.settings import (
    ApiSettings,
    ClusterSettings,
    FallbackSettings,
    FetchSettings,
    HostingSettings,
    HttpSmsSettings,
    InboundTLS,
    LinkSettings,
    LoggingSettings,
    MetricsSettings,
    RelayHook,
    RelayRoute,
    RelaySettings,
    RetrySettings,
    SmppSettings,
    StoreSettings,
)
from mm7.transport.inbound_auth import PeerAuth
from mm7.transport.link import LinkConfig, TLSConfig
from mm7.transport.listener import ListenerLimits
from mm7.transport.server import InboundConfig, Peer

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "mm7" / "conf" / "gateway.toml"
LOADER = Path(loader.__file__)

#: Table getters whose first argument is the key they read
GETTERS = {name for name in vars(Table) if not name.startswith("_")} - {
    "finish",
    "error",
    "key_path",
    "env_named",
}
#: the loader's own readers, called as ``reader(table, key, ...)``
READERS = {"_size", "_listen", "_words", "_file", "_region"}
#: keys of the dialects file (conf/dialects.toml), read by the same code
NOT_GATEWAY_KEYS = {"dialects"}

#: the dataclasses declaring the defaults of each table's keys (NAME: any name)
OWNERS: dict[str, tuple[type[Any], ...]] = {
    "links.NAME": (LinkConfig, LinkSettings),
    "links.NAME.breaker": (LinkConfig,),
    "links.NAME.retry": (RetrySettings,),
    "links.NAME.tls": (TLSConfig,),
    "inbound": (InboundConfig, ListenerLimits),
    "inbound.tls": (InboundTLS,),
    "inbound.peers.NAME": (Peer, PeerAuth),
    "api": (ApiSettings, ListenerLimits),
    "api.fetch": (FetchSettings,),
    "store": (StoreSettings,),
    "relay": (RelaySettings,),
    "relay.hooks.NAME": (RelayHook,),
    "relay.routes": (RelayRoute,),
    "relay.default_route": (RelayRoute,),
    "logging": (LoggingSettings,),
    "metrics": (MetricsSettings,),
    "cluster": (ClusterSettings,),
    "hosting": (HostingSettings,),
    "fallback": (FallbackSettings,),
    "sms_links.NAME": (SmppSettings, HttpSmsSettings),
    "sms_links": (SmppSettings, HttpSmsSettings),  # the [[sms_links]] form
}
#: tables whose children are named (``[links.NAME]``), so NAME is any name
NAMED = {"links", "inbound.peers", "relay.hooks", "sms_links"}
#: a default that is not one field's: an absent max_body_bytes keeps the parser's whole Limits
OTHER_DEFAULTS: dict[tuple[str, str], Any] = {
    ("inbound", "max_body_bytes"): DEFAULT_LIMITS.max_total_bytes,
}


# --------------------------------------------------------------------------- the loader's keys


def _loader_calls() -> Iterator[tuple[str, str, ast.Call]]:
    """(function name, key, call) for every key read in loader.py with a literal key."""
    for node in ast.walk(ast.parse(LOADER.read_text())):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in GETTERS:
            name, args = func.attr, node.args
        elif isinstance(func, ast.Name) and func.id in READERS:
            name, args = func.id, node.args[1:]
        elif isinstance(func, ast.Attribute) and func.attr in READERS:
            name, args = func.attr, node.args[1:]
        else:
            continue
        if args and isinstance(args[0], ast.Constant) and isinstance(args[0].value, str):
            yield name, args[0].value, node


def loader_keys() -> dict[str, bool]:
    """Every key the loader reads, with whether it is a secret (``key`` or ``key_env``)."""
    keys: dict[str, bool] = {}
    for name, key, _ in _loader_calls():
        if key not in NOT_GATEWAY_KEYS:
            keys[key] = keys.get(key, False) or name == "secret"
    return keys


def renamed_defaults() -> dict[str, list[tuple[type[Any], str]]]:
    """Key -> (dataclass, field) where the loader reads its default from a field of another
    name: ``breaker.integer("threshold", _default(LinkConfig, "breaker_threshold"))``."""
    out: dict[str, list[tuple[type[Any], str]]] = {}
    for _, key, call in _loader_calls():
        for arg in call.args[1:]:
            if (
                isinstance(arg, ast.Call)
                and isinstance(arg.func, ast.Name)
                and arg.func.id == "_default"
                and isinstance(arg.args[0], ast.Name)
                and isinstance(arg.args[1], ast.Constant)
            ):
                cls = getattr(loader, arg.args[0].id)
                out.setdefault(key, []).append((cls, arg.args[1].value))
    return out


def test_the_walk_finds_the_loader_keys() -> None:
    keys = loader_keys()
    # one of each way of reading a key, so an unnoticed change of the loader cannot empty the
    # reference test below
    for key in ("url", "max_age", "links", "inbound", "peers", "tls", "listen", "max_body_bytes"):
        assert key in keys
    assert keys["password"] and keys["dsn"] and not keys["url"]
    assert "breaker_threshold" in [f for _, f in renamed_defaults()["threshold"]]


# --------------------------------------------------------------------------- the reference


@dataclasses.dataclass(frozen=True, slots=True)
class Line:
    """One line of the reference that reads as TOML on its own, ``#`` removed."""

    number: int
    table: str  # the table it is in (the last header, active or commented)
    data: Mapping[str, Any]  # what the line says, as TOML
    commented: bool
    header: bool  # a [table] or [[table]] line
    example: bool  # its note starts with "e.g."


def reference_lines(text: str) -> list[Line]:
    lines: list[Line] = []
    table = ""
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        commented = stripped.startswith("#")
        body = stripped[1:].strip() if commented else stripped
        try:
            data = tomllib.loads(body)
        except tomllib.TOMLDecodeError:
            continue  # prose
        header = body.split("#", 1)[0].strip()
        if header.startswith("["):
            table = header.strip("[]").strip()
            lines.append(Line(number, table, data, commented, True, False))
        elif data:
            note = body.split("#", 1)[1].strip() if "#" in body else ""
            lines.append(Line(number, table, data, commented, False, note.startswith("e.g.")))
    return lines


def named_keys(text: str) -> set[str]:
    """Every key the reference names, active or commented, at any depth (headers included)."""
    names: set[str] = set()

    def walk(data: Mapping[str, Any]) -> None:
        for key, value in data.items():
            names.add(key)
            if isinstance(value, Mapping):
                walk(value)
            elif isinstance(value, list):
                for item in value:
                    if isinstance(item, Mapping):
                        walk(item)

    for line in reference_lines(text):
        walk(line.data)
    return names


def missing_keys(text: str) -> list[str]:
    names = named_keys(text)
    return sorted(
        key
        for key, secret in loader_keys().items()
        if key not in names and not (secret and key + ENV_SUFFIX in names)
    )


def test_every_key_the_loader_reads_is_in_the_reference() -> None:
    assert missing_keys(REFERENCE.read_text()) == []


@pytest.mark.parametrize("key", ["keepalive_timeout", "client_cert", "service_codes", "dsn"])
def test_a_key_taken_out_of_the_reference_is_noticed(key: str) -> None:
    text = "\n".join(
        line
        for line in REFERENCE.read_text().splitlines()
        if not line.lstrip("# ").startswith((f"{key} =", f"{key}_env ="))
    )
    assert key in missing_keys(text)


# --------------------------------------------------------------------------- stated defaults


def _table_pattern(table: str) -> str:
    """``links.simulator.tls`` -> ``links.NAME.tls``."""
    parts = table.split(".") if table else []
    for index in range(len(parts)):
        if ".".join(parts[:index]) in NAMED:
            parts[index] = "NAME"
    return ".".join(parts)


def _leaves(table: str, data: Mapping[str, Any]) -> Iterator[tuple[str, str, Any]]:
    """(table, key, value) for each value of a line (``tls.x = 1`` is key x of table ....tls)."""
    for key, value in data.items():
        if isinstance(value, Mapping):
            yield from _leaves(f"{table}.{key}" if table else key, value)
        else:
            yield table, key, value


def expected_default(table: str, key: str) -> Any:
    """The default the loader uses for ``key`` of ``table``, from the dataclass declaring it."""
    pattern = _table_pattern(table)
    if (pattern, key) in OTHER_DEFAULTS:
        return OTHER_DEFAULTS[pattern, key]
    owners = OWNERS.get(pattern)
    assert owners is not None, f"no dataclass is known to declare the defaults of [{pattern}]"
    candidates = [(c, f) for c, f in renamed_defaults().get(key, []) if c in owners]
    candidates = candidates or [(c, key) for c in owners]
    for cls, field in candidates:
        try:
            return loader._default(cls, field)
        except LookupError:
            continue
    raise AssertionError(f"[{pattern}] {key}: no dataclass default (mark the line 'e.g.')")


def as_loaded(value: Any, default: Any, table: str, key: str) -> Any:
    """``value`` as the loader reads it into the default's type (durations, sizes, dialects)."""
    if isinstance(default, Dialect):
        return DIALECTS[value]
    if isinstance(default, bool) or isinstance(value, bool):
        return value
    if isinstance(default, float):
        reader = Table({key: value}, table, Context(REFERENCE, {}))
        return reader.duration(key, -1.0, allow_zero=True)
    if isinstance(default, int):
        return parse_size(value, key)
    if isinstance(default, Path):
        return Path(value)
    return value


def test_every_commented_default_is_the_dataclass_default() -> None:
    checked = 0
    for line in reference_lines(REFERENCE.read_text()):
        if not line.commented or line.header or line.example:
            continue
        for table, key, value in _leaves(line.table, line.data):
            default = expected_default(table, key)
            assert as_loaded(value, default, table, key) == default, (
                f"conf/gateway.toml:{line.number}: [{table}] {key} = {value!r}, "
                f"but the default is {default!r} (or mark the line 'e.g.')"
            )
            checked += 1
    assert checked >= 10
