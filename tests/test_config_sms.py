"""``[[sms_links]]`` in gateway.toml: SMPP and HTTP links read with their defaults, the password
from the environment and never shown, and each bad value refused naming its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from mm7.service.config.settings import HttpSmsSettings, SmppSettings
from tests.test_config import error, load

SMPP = """
[[sms_links]]
name = "smsc1"
type = "smpp"
host = "127.0.0.1"
port = 2775
system_id = "mm7gw"
password_env = "SMPP_PW"
{more}
"""


def test_smpp_and_http_links_are_read(tmp_path: Path) -> None:
    http = (
        '[[sms_links]]\nname = "kannel"\ntype = "http"\nusername = "gw"\npassword = "hush-7"\n'
        'url = "http://127.0.0.1:13013/cgi-bin/sendsms?to={to}&text={text}&dlr-url={dlr_url}"\n'
        'dlr_url_base = "https://gw.example"\ntimeout = "3s"\n'
    )
    config = load(
        tmp_path,
        {"APP_KEY": "app-key-value-1", "SMPP_PW": "smpp-secret-9"},
        extra=SMPP.format(more='tps = 5\nwindow = 3\nsource_ton = 5\nthrottle_delay = "2s"') + http,
    )
    smpp, kannel = config.sms_links
    assert isinstance(smpp, SmppSettings) and isinstance(kannel, HttpSmsSettings)
    assert (smpp.name, smpp.host, smpp.port, smpp.system_id) == (
        "smsc1",
        "127.0.0.1",
        2775,
        "mm7gw",
    )
    assert smpp.password is not None and smpp.password.reveal() == "smpp-secret-9"
    assert (smpp.tps, smpp.window, smpp.source_ton, smpp.throttle_delay) == (5.0, 3, 5, 2.0)
    assert (smpp.dest_ton, smpp.receipts, smpp.reconnect_max) == (1, True, 30.0)
    assert (kannel.username, kannel.timeout, kannel.dlr_url_base) == (
        "gw",
        3.0,
        "https://gw.example",
    )
    assert "hush-7" not in repr(config.sms_links) and "smpp-secret-9" not in repr(config)


def test_no_sms_links_by_default(tmp_path: Path) -> None:
    assert load(tmp_path).sms_links == ()


@pytest.mark.parametrize(
    ("more", "key", "why"),
    [
        ("window = 0", "sms_links.smsc1.window", ""),
        ("dest_npi = 300", "sms_links.smsc1.dest_npi", "0-255"),
        ("tps = -1", "sms_links.smsc1.tps", ""),
        ("bind = 1", "sms_links.smsc1.bind", ""),
        ('type = "smtp"', "sms_links.smsc1.type", ""),
    ],
)
def test_bad_smpp_values_name_their_key(tmp_path: Path, more: str, key: str, why: str) -> None:
    text = SMPP.format(more=more)
    if more.startswith("type"):
        text = text.replace('type = "smpp"\n', "")
    message = error(tmp_path, {"APP_KEY": "app-key-value-1", "SMPP_PW": "x"}, extra=text)
    assert key in message and why in message


def test_bad_http_template_and_missing_password_env(tmp_path: Path) -> None:
    bad = '[[sms_links]]\nname = "k"\ntype = "http"\nurl = "http://h/send?to={to}&x={nope}"\n'
    message = error(tmp_path, extra=bad)
    assert "sms_links.k.url" in message and "nope" in message
    message = error(tmp_path, extra=SMPP.format(more=""))
    assert "sms_links.smsc1.password_env" in message and "SMPP_PW" in message
