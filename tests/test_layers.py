"""Imports go downward only: core <- transport/content <- simulator <- service <- cli, and inside
the service each room imports only the rooms below it (the MT path, the relay and the API never
import each other; the store's protocol never imports a backend). Read from the source with
``ast``, every import counted, including those inside functions and under TYPE_CHECKING."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mm7"

LOWER = {"core", "content", "transport"}
SERVICE_BASE = {
    "service.errors",
    "service.backoff",
    "service.config",
    "service.store",
    "service.url_guard",
}
#: what each room may import besides itself
ALLOWED: dict[str, set[str]] = {
    "mm7": set(),
    "core": set(),
    "transport": {"core"},
    "content": {"core"},
    "simulator": LOWER,
    "interop": LOWER | {"simulator"},
    "service.errors": {"core"},
    "service.backoff": set(),
    "service.url_guard": {"core", "service.errors"},
    "service.starter": {"core", "service.errors"},
    "service.store": {"core", "service.errors"},
    "service.config": LOWER | {"service.errors"},
    "service.ops": LOWER | {"service.store"},
    "service.hosting": LOWER | SERVICE_BASE,
    "service.mt": LOWER | SERVICE_BASE | {"service.ops", "service.hosting"},
    "service.relay": LOWER | SERVICE_BASE | {"service.ops"},
    "service.api": LOWER | SERVICE_BASE | {"service.ops", "service.hosting"},
    "service.cluster": LOWER | SERVICE_BASE,
    "service.sms": LOWER | SERVICE_BASE,
    "service.fallback": LOWER | SERVICE_BASE | {"service.hosting", "service.sms"},
    "service": set(),
}
_SERVICE_ROOMS = {room for room in ALLOWED if room.startswith("service.")}
for top in ("service.runtime", "service.cli", "service.demo"):
    ALLOWED[top] = LOWER | {"simulator"} | _SERVICE_ROOMS | {"service.runtime", "service.demo"}
ALLOWED["cli"] = set(ALLOWED) | {"service.runtime", "service.cli", "service.demo"}

#: the store's protocol and records, which every backend imports and which import none
STORE_PROTOCOL = ("mm7.service.store.base", "mm7.service.store.records", "mm7.service.store.outbox")


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _room(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "mm7"
    if parts[1] == "service" and len(parts) > 2:
        return f"service.{parts[2]}"
    return parts[1]


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mm7"):
            found.add(node.module)
            # "from mm7.service import store" imports the submodule store
            found.update(
                f"{node.module}.{a.name}" for a in node.names if node.module == "mm7.service"
            )
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("mm7"))
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_room_is_known() -> None:
    rooms = {_room(_module(p)) for p in MODULES}
    assert rooms <= set(ALLOWED), f"a new room needs its place in ALLOWED: {rooms - set(ALLOWED)}"


@pytest.mark.parametrize("path", MODULES, ids=[_module(p) for p in MODULES])
def test_imports_go_downward(path: Path) -> None:
    module = _module(path)
    room = _room(module)
    allowed = ALLOWED[room] | {room}
    wrong = sorted(t for t in _imports(path) if _room(t) not in allowed and t != "mm7")
    assert wrong == [], f"{module} ({room}) may import only {sorted(allowed)}"


def test_the_store_protocol_imports_no_backend() -> None:
    for module in STORE_PROTOCOL:
        path = PACKAGE.parent / (module.replace(".", "/") + ".py")
        backends = sorted(t for t in _imports(path) if t.startswith("mm7.service.store.sqlite"))
        assert backends == [], f"{module} imports a backend: {backends}"


def test_the_checker_sees_a_wrong_import(tmp_path: Path) -> None:
    # a store module importing the MT path must be caught (the checker is not vacuous)
    fake = tmp_path / "fake.py"
    fake.write_text("def f():\n    from mm7.service.mt.dispatcher import Dispatcher\n")
    assert {_room(t) for t in _imports(fake)} == {"service.mt"}
    assert "service.mt" not in ALLOWED["service.store"]
