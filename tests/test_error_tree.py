"""One error tree: every public exception class mm7 defines derives from ``MM7Error``, so a caller's
``except MM7Error`` catches a store, API, transport or content failure as well as a codec one."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import mm7
from mm7.core.errors import MM7Error


def _public_exceptions() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(mm7.__path__, "mm7."):
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == module.__name__
                and not name.startswith("_")
            ):
                found[f"{module.__name__}.{name}"] = value
    return found


def test_every_public_error_is_an_mm7_error() -> None:
    errors = _public_exceptions()
    # the walk sees the layers' errors (a broken walk would pass vacuously)
    assert {"mm7.service.errors.StoreError", "mm7.transport.errors.HandlerError"} <= set(errors)
    assert {"mm7.content.parts.ContentError", "mm7.core.errors.ParseError"} <= set(errors)
    outside = sorted(name for name, cls in errors.items() if not issubclass(cls, MM7Error))
    assert outside == []
