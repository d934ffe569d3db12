"""The README's relay configuration example is a valid configuration that says what it claims."""

from __future__ import annotations

from pathlib import Path

import pytest

from mm7.service.config.loader import load_config
from mm7.service.errors import ConfigError
from mm7.service.relay.routing import MoFacts, choose_route, status_hook_for

ROOT = Path(__file__).resolve().parent.parent


def readme_toml() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("```toml\n", text.index("### Relay to applications")) + len("```toml\n")
    return text[start : text.index("```", start)]


def config_with(tmp_path: Path, snippet: str) -> Path:
    base = (ROOT / "mm7" / "conf" / "gateway.toml").read_text()
    path = tmp_path / "gateway.toml"
    path.write_text(base + "\n" + snippet)
    return path


def test_the_readme_relay_example_loads_and_routes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MM7_HOOK_APP_SECRET", "s3cret")
    config = load_config(config_with(tmp_path, readme_toml()))
    relay = config.relay
    (hook,) = relay.hooks
    assert hook.name == "app" and hook.secret.reveal() == "s3cret" and hook.concurrency == 4
    promo = MoFacts(link="simulator", recipients=["12345"], text="promo code please")
    assert choose_route(relay, promo) is not None
    assert choose_route(relay, promo).name == "promo"  # type: ignore[union-attr]
    other = MoFacts(link="simulator", recipients=["12345"], text="hello")
    assert choose_route(relay, other) is relay.default_route
    assert status_hook_for(relay, "simulator") == "app"


def test_the_readme_relay_example_needs_its_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MM7_HOOK_APP_SECRET", raising=False)
    with pytest.raises(ConfigError, match="MM7_HOOK_APP_SECRET"):
        load_config(config_with(tmp_path, readme_toml()))
