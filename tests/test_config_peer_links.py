"""Which links a peer's reports are correlated across (``[inbound.peers.NAME] links``, and every
link of the same MMSC), and a link's own addresses (how swapped report addresses are seen)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mm7.service.config.loader import load_config
from mm7.service.config.settings import GatewayConfig
from mm7.service.errors import ConfigError

BASE = """
[links.a]
url = "https://mmsc.example:8443/mm7/a"
default = true
sender_address = "12345"
[links.b]
url = "https://MMSC.example:8443/other/path"
prefixes = ["+44"]
[links.c]
url = "https://mmsc.example:9443/mm7"
prefixes = ["+33"]
[links.d]
url = "https://other.example/mm7"
prefixes = ["+49"]

[inbound]
listen = "127.0.0.1:0"
[inbound.peers.mmsc]
{peer}
allow = ["127.0.0.1/32"]

[api]
listen = "127.0.0.1:0"
[[api.keys]]
name = "app"
key = "peer-links-key-0123456789"
"""


def load(tmp_path: Path, peer: str) -> GatewayConfig:
    path = tmp_path / "gateway.toml"
    path.write_text(BASE.format(peer=peer))
    return load_config(path, env={})


def test_one_link_also_covers_the_links_of_the_same_mmsc(tmp_path: Path) -> None:
    config = load(tmp_path, 'link = "a"')
    # same scheme, host (any case) and port: b; another port (c) or host (d) is another MMSC
    assert config.peer_links("mmsc") == ("a", "b")
    assert config.peer_link("mmsc") == "a"


def test_links_names_every_account_the_peer_reports_for(tmp_path: Path) -> None:
    config = load(tmp_path, 'links = ["d", "c"]')
    assert config.peer_link("mmsc") == "d"
    assert config.peer_links("mmsc") == ("d", "c")


def test_own_addresses_are_the_link_sender_address(tmp_path: Path) -> None:
    config = load(tmp_path, 'link = "a"')
    assert config.own_addresses("a") == frozenset({"12345"})
    assert config.own_addresses("b") == frozenset()


@pytest.mark.parametrize(
    ("peer", "says"),
    [
        ('links = ["a", "nope"]', 'inbound.peers.mmsc.links[1]: no link named "nope"'),
        ("links = []", "inbound.peers.mmsc.links: must name at least one link"),
        ('link = "a"\nlinks = ["b"]', "inbound.peers.mmsc.links: give link or links, not both"),
    ],
)
def test_bad_links_are_refused_by_key(tmp_path: Path, peer: str, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, peer)
    assert says in str(info.value)
