"""In a cluster the URLs handed to applications (MO media) and handsets (hosted pages) must name
the load balancer: unset, ``[relay] media_url_base`` and ``[hosting] url_base`` name the API
address of whichever instance made the URL. A gateway on PostgreSQL with either unset while in
use warns once at start naming the keys (and not again in the single-process words); on SQLite
the cluster wording never appears."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import structlog

from mm7.service.cluster.urls import HOSTING_URL_BASE, MEDIA_URL_BASE, unset_url_bases
from mm7.service.config.loader import load_config
from mm7.service.runtime import Gateway
from tests.helpers.runtime import use_postgresql, write_config
from tests.helpers.stores import pg_database

CLUSTER_WARNING = "mm7.gateway.cluster_url_base_unset"
ENV = {"HOOK_SECRET": "hook-secret-0123456789"}


def _extra(media: str = "url", media_url_base: str = "", hosting: str = "enabled = true\n") -> str:
    return f"""
[relay]
{media_url_base}
[relay.hooks.app]
url = "http://127.0.0.1:9/hook"
secret_env = "HOOK_SECRET"
[relay.default_route]
hook = "app"
media = "{media}"

[hosting]
{hosting}
"""


@pytest.mark.parametrize(
    ("backend", "extra", "keys"),
    [
        ("postgresql", _extra(), (MEDIA_URL_BASE, HOSTING_URL_BASE)),
        ("postgresql", _extra(media="inline"), (HOSTING_URL_BASE,)),
        ("postgresql", _extra(hosting="enabled = false\n"), (MEDIA_URL_BASE,)),
        # hosting falls back to media_url_base: one key set covers both
        ("postgresql", _extra(media_url_base='media_url_base = "https://lb.example"'), ()),
        (
            "postgresql",
            _extra(media="inline", hosting='enabled = true\nurl_base = "https://lb.example"\n'),
            (),
        ),
        ("sqlite", _extra(), ()),
    ],
)
def test_the_keys_a_cluster_needs_are_those_unset_for_features_in_use(
    tmp_path: Path, backend: str, extra: str, keys: tuple[str, ...]
) -> None:
    path = write_config(tmp_path, 9, extra=extra)
    env = dict(ENV)
    if backend == "postgresql":
        use_postgresql(path)
        env["MM7_TEST_DSN"] = "postgresql://postgres@127.0.0.1:5432/unused"
    assert unset_url_bases(load_config(path, env=env)) == keys


async def _start_and_stop(path: Path, env: dict[str, str]) -> list[dict[str, Any]]:
    gateway = Gateway(load_config(path, env=env), configure_logs=False, announce=lambda _: None)
    with structlog.testing.capture_logs() as captured:
        await gateway.start()
        await gateway.stop()
    return captured


async def test_a_gateway_on_postgresql_warns_once_naming_the_unset_url_bases(
    tmp_path: Path,
) -> None:
    async with pg_database() as dsn:
        path = write_config(tmp_path, 9, extra=_extra())
        use_postgresql(path)
        captured = await _start_and_stop(path, {**ENV, "MM7_TEST_DSN": dsn})
    warned = [e for e in captured if e["event"] == CLUSTER_WARNING]
    assert len(warned) == 1, captured
    assert warned[0]["log_level"] == "warning"
    assert warned[0]["keys"] == ["relay.media_url_base", "hosting.url_base"]
    assert "load balancer" in warned[0]["hint"]
    # the same key is not warned about again in the single-process words
    events = {e["event"] for e in captured}
    assert "mm7.gateway.hosting_url_base_guessed" not in events
    assert "mm7.gateway.media_url_base_guessed" not in events


async def test_a_gateway_on_postgresql_with_the_bases_set_does_not_warn(tmp_path: Path) -> None:
    async with pg_database() as dsn:
        extra = _extra(media_url_base='media_url_base = "https://lb.example"')
        path = write_config(tmp_path, 9, extra=extra)
        use_postgresql(path)
        captured = await _start_and_stop(path, {**ENV, "MM7_TEST_DSN": dsn})
    assert not [e for e in captured if "url_base" in e["event"]], captured


async def test_a_gateway_on_sqlite_gets_no_cluster_wording(tmp_path: Path) -> None:
    path = write_config(tmp_path, 9, extra=_extra())
    captured = await _start_and_stop(path, ENV)
    events = [e["event"] for e in captured]
    assert CLUSTER_WARNING not in events
    assert not [e for e in captured if "balancer" in str(e.get("hint", ""))]
    # one process: the existing warning about hosting's guessed base is still given, once
    assert events.count("mm7.gateway.hosting_url_base_guessed") == 1
