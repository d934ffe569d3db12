"""The logging of mm7's servers: structlog and stdlib logging through one renderer, secrets masked.

``configure_logging(level, json)`` is called once at start by the gateway
(``mm7.service.runtime``, which reads it as ``mm7.service.ops.logs``) and by ``mm7 simulate``
(here, below both, so that the two log alike); again is harmless: it replaces what it installed
before. Afterwards:

- structlog events (transport and service) and stdlib records (the core's ``mm7.*`` loggers,
  aiohttp, ...) all go through one ``logging.StreamHandler`` on stderr, rendered by the same
  renderer: JSON lines in production (``json=True``), structlog's console renderer otherwise;
- every line carries ``timestamp`` (ISO 8601, UTC), ``level``, ``logger``, ``event`` and the
  bound context: keys bound on the logger (``log.bind(link=...)``) and keys bound for the task
  with ``structlog.contextvars.bound_contextvars(message_id=..., transaction_id=...)``;
- ``redact_secrets`` runs on every event dict before rendering, masking the values of keys that
  name secrets (``password``, ``secret``, ``token``, ``authorization``, ``api_key``, ... and any
  key ending in one of them) at any depth, including ``(name, value)`` header pairs. Secrets are
  ``Secret`` values that mask themselves already; this is defence in depth.

The level filters both worlds: stdlib records below it never reach the handler, and structlog's
stdlib-bound loggers drop events below it before any processing: ``LevelFirstLogger`` checks the
level before the context is copied and the processors run, so a call below the level costs the
proxy's assembly and one comparison. Loggers are not cached (``cache_logger_on_first_use`` stays
off): a cached logger keeps the processors, wrapper and factory it was built with, so a later
``configure_logging``, ``unconfigure_logging`` or a test's ``capture_logs`` would not reach it.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from typing import IO, Any

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

__all__ = [
    "REDACTED",
    "SECRET_KEY_WORDS",
    "LazyLog",
    "LevelFirstLogger",
    "configure_logging",
    "drops",
    "is_secret_key",
    "redact",
    "redact_secrets",
    "unconfigure_logging",
]

#: what a secret value is replaced with
REDACTED = "***"

#: a key is secret when, lower-cased with ``-``/spaces as ``_``, it is one of these or ends in
#: ``_`` + one of them (``access_token``, ``client_secret``, ``proxy_authorization``, ...)
SECRET_KEY_WORDS = frozenset(
    {
        "password",
        "passwd",
        "passphrase",
        "secret",
        "token",
        "authorization",
        "api_key",
        "apikey",
        "x_api_key",
        "cookie",
        "set_cookie",
        "dsn",
        "private_key",
        "credentials",
    }
)

#: the keys structlog and logging use for themselves: never masked
_OWN_KEYS = frozenset({"event", "level", "logger", "timestamp", "exc_info", "stack_info"})
#: structlog's method names to stdlib levels, as ``filter_by_level`` reads them
_NAME_TO_LEVEL: Mapping[str, int] = {
    "critical": logging.CRITICAL,
    "exception": logging.ERROR,
    "error": logging.ERROR,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "notset": logging.NOTSET,
}
_SEPARATORS = re.compile(r"[-\s.]+")
_MAX_DEPTH = 8

LEVELS: Mapping[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


def is_secret_key(key: object) -> bool:
    """Whether a value under ``key`` must never be logged."""
    if not isinstance(key, str):
        return False
    name = _SEPARATORS.sub("_", key.strip().lower())
    if name in SECRET_KEY_WORDS:
        return True
    return any(name.endswith("_" + word) for word in SECRET_KEY_WORDS)


def redact(value: Any, _depth: int = 0) -> Any:
    """``value`` with every secret-named entry masked, at any depth (copies; never mutates).

    Mappings are masked by key; lists and tuples are walked, and a 2-tuple/list whose first
    item is a secret name (a header pair like ``("Authorization", "Basic ...")``) has its second
    item masked. Other values are returned as they are.
    """
    if _depth > _MAX_DEPTH:
        return value
    if isinstance(value, Mapping):
        return {
            k: (REDACTED if is_secret_key(k) and v is not None else redact(v, _depth + 1))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        if len(value) == 2 and is_secret_key(value[0]):
            pair = [value[0], REDACTED]
            return tuple(pair) if isinstance(value, tuple) else pair
        items = [redact(item, _depth + 1) for item in value]
        return tuple(items) if isinstance(value, tuple) else items
    return value


def redact_secrets(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: mask the values of secret-named keys anywhere in the event dict."""
    for key in list(event_dict):
        if key in _OWN_KEYS:
            continue
        value = event_dict[key]
        if is_secret_key(key):
            if value is not None:
                event_dict[key] = REDACTED
        elif isinstance(value, Mapping | list | tuple):
            event_dict[key] = redact(value)
    return event_dict


class _GatewayHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler ``configure_logging`` installs on the root logger (found again by its type)."""


def _level(level: str | int) -> int:
    if isinstance(level, int):
        return level
    try:
        return LEVELS[level.strip().lower()]
    except KeyError:
        raise ValueError(
            f"unknown log level {level!r}; expected one of {', '.join(LEVELS)}"
        ) from None


def drops(name: str, level: int) -> bool:
    """Whether an event at ``level`` of the logger ``name`` is dropped by the configuration in
    force (``filter_by_level`` and the stdlib level): a hot path can skip building it. False
    when the processors keep every level (``structlog.testing.capture_logs``)."""
    # the level first: it is cheap, and when it lets the event through the processors don't matter
    return not logging.getLogger(name).isEnabledFor(level) and (
        structlog.stdlib.filter_by_level in structlog.get_config()["processors"]
    )


class LevelFirstLogger(structlog.stdlib.BoundLogger):
    """structlog's stdlib ``BoundLogger`` that drops an event below the level before copying the
    context and running the processors, exactly when ``filter_by_level`` (in the chain) would.

    ``filter_by_level`` runs as the first processor, after the call has bound and copied the
    context; most calls on the hot paths are below the configured level (debug and info events at
    ``warning``), and for them that work and the ``DropEvent`` it ends in were the whole cost.
    Without ``filter_by_level`` in the chain (``capture_logs``) every event goes through as before.
    """

    def _proxy_to_logger(
        self,
        method_name: str,
        event: str | None = None,
        *event_args: str,
        **event_kw: Any,
    ) -> Any:
        logger = self._logger
        level = _NAME_TO_LEVEL.get(method_name)
        # filter_by_level's own test (disabled, effective level), not isEnabledFor: see there;
        # a method it doesn't know takes the ordinary path
        if (
            level is not None
            and (logger.disabled or level < logger.getEffectiveLevel())
            and structlog.stdlib.filter_by_level in self._processors
        ):
            return None
        return super()._proxy_to_logger(method_name, event, *event_args, **event_kw)


class LazyLog:
    """A structlog logger bound to its context only when an event is kept: ``log.bind`` costs
    several microseconds, and a request on a hot path usually logs nothing at the configured
    level (info events at ``warning``)."""

    __slots__ = ("_name", "_context")

    def __init__(self, name: str, **context: Any) -> None:
        self._name = name
        self._context = context

    def bind(self, **more: Any) -> LazyLog:
        """The same logger with ``more`` context."""
        return LazyLog(self._name, **self._context, **more)

    def _log(self, level: int, method: str, event: str, fields: dict[str, Any]) -> None:
        if not drops(self._name, level):
            bound = structlog.get_logger(self._name).bind(**self._context)
            getattr(bound, method)(event, **fields)

    def debug(self, event: str, **fields: Any) -> None:
        self._log(logging.DEBUG, "debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._log(logging.INFO, "info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._log(logging.WARNING, "warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._log(logging.ERROR, "error", event, fields)

    def exception(self, event: str, **fields: Any) -> None:
        self._log(logging.ERROR, "exception", event, fields)


def _shared_processors() -> list[Processor]:
    """What both structlog events and stdlib records go through before rendering."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        structlog.processors.StackInfoRenderer(),
        redact_secrets,
    ]


def configure_logging(
    level: str | int = "info", json: bool = True, *, stream: IO[str] | None = None
) -> None:
    """Send structlog and stdlib logging to ``stream`` (stderr) through one renderer.

    ``level`` is a name (``debug`` ... ``critical``, as in ``[logging] level``) or a logging
    number; ``json`` picks JSON lines (production) or the console renderer. Idempotent: a second
    call replaces the handler the first one installed and reconfigures structlog.
    """
    numeric = _level(level)
    out = stream if stream is not None else sys.stderr
    shared = _shared_processors()

    final: list[Processor] = [structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    if json:
        final += [
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(sort_keys=False),
        ]
    else:
        colors = bool(getattr(out, "isatty", lambda: False)())
        final.append(structlog.dev.ConsoleRenderer(colors=colors))

    formatter = structlog.stdlib.ProcessorFormatter(
        # stdlib records: their ``extra`` attributes join the event dict (and get redacted)
        foreign_pre_chain=[*shared[:-1], structlog.stdlib.ExtraAdder(), shared[-1]],
        processors=final,
    )
    handler = _GatewayHandler(out)
    handler.setFormatter(formatter)

    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _GatewayHandler)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(numeric)

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=LevelFirstLogger,
        context_class=dict,
        # not cached: a later configure_logging (or a test's reset) applies to every logger
        cache_logger_on_first_use=False,
    )


def unconfigure_logging() -> None:
    """Undo ``configure_logging``: remove its handler and reset structlog (for tests)."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _GatewayHandler)]:
        root.removeHandler(old)
        old.close()
    root.setLevel(logging.WARNING)
    structlog.reset_defaults()
