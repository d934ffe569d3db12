"""Recipients checked with libphonenumber at intake (issue 13): numbers the carrier would refuse
are a 422 naming ``to[i]``, national numbers are read in the key's or the link's region and
stored in E.164, short codes and e-mail addresses pass; ``number_check = "possible"`` is the
operator's way out for ranges libphonenumber does not know. Real API apps on loopback with
their SQLite store; every refusal writes nothing."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from mm7.cli.main import main
from mm7.service.api import numbers
from mm7.service.api.app import RECIPIENTS_OFF_LOOP, create_api_app
from mm7.service.api.numbers import NumberRules, normalise_recipient
from mm7.service.config.loader import load_config
from mm7.service.errors import ApiError, ConfigError
from mm7.service.runtime import Gateway as Runtime
from mm7.service.store.sqlite.store import SqliteStore
from tests.helpers.api import Gateway, validate
from tests.helpers.runtime import KEY as RUNTIME_KEY
from tests.helpers.runtime import bound_socket, write_config

PLAIN = "test-key-plain-0123456789"
US = "test-key-us-0123456789"
LAB = "test-key-lab-0123456789"
STRICT = "test-key-strict-0123456789"

CONFIG = """
[links.main]
url = "http://127.0.0.1:9/mm7"
default = true
[links.de]
url = "http://127.0.0.1:9/mm7"
prefixes = ["+49"]
default_region = "DE"

[inbound]
listen = "127.0.0.1:0"
[inbound.peers.main]
allow = ["127.0.0.1/32"]

[api]
listen = "127.0.0.1:0"
number_check = "{number_check}"
[[api.keys]]
name = "plain"
key = "{plain}"
[[api.keys]]
name = "us"
key = "{us}"
default_region = "us"
[[api.keys]]
name = "lab"
key = "{lab}"
number_check = "possible"
[[api.keys]]
name = "strict"
key = "{strict}"
number_check = "valid"

[store]
path = "{db}"
"""


def write(tmp_path: Path, number_check: str = "valid") -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(
        CONFIG.format(
            number_check=number_check,
            plain=PLAIN,
            us=US,
            lab=LAB,
            strict=STRICT,
            db=(tmp_path / "mm7.sqlite").as_posix(),
        )
    )
    return path


class Api(Gateway):
    """The API with a chosen key per call."""

    async def send(self, key: str, body: Any) -> tuple[int, Any]:
        response = await self.client.post(
            "/v1/messages", json=body, headers={"Authorization": f"Bearer {key}"}
        )
        return response.status, await response.json()

    async def refuse(self, key: str, to: Any, field: str) -> str:
        """Expect a 422 naming ``field`` for ``to``, and nothing written."""
        before = self.counts()
        status, answer = await self.send(key, {"to": to, "text": "hi"})
        assert status == 422, answer
        validate("Error", answer)
        assert answer["error"]["field"] == field, answer
        assert self.counts() == before
        return str(answer["error"]["message"])

    async def stored(self, key: str, body: Any) -> list[str]:
        """POST ``body`` (expect 202) and read back the stored recipient rows and fields."""
        status, answer = await self.send(key, body)
        assert status == 202, answer
        record = await self.store.get_message(answer["id"])
        assert record is not None
        # the fields repeat the first 100 recipients (FIELDS_TO_MAX), as stored
        assert record.fields["to"] == [r.address for r in record.recipients][:100]
        return [r.address for r in record.recipients]


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Any]:
    opened: list[tuple[TestClient[Any, Any], SqliteStore]] = []

    async def make(number_check: str = "valid") -> Api:
        config = load_config(write(tmp_path, number_check), env={})
        store = await SqliteStore.open(config.store.path)
        client = TestClient(TestServer(create_api_app(config, store), host="127.0.0.1", port=0))
        await client.start_server()
        opened.append((client, store))
        return Api(client, store, config.store.path)

    yield make
    for client, store in opened:
        await client.close()
        await store.close()


# --------------------------------------------------------------------------- the rules alone


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("+1", "not a phone number"),
        ("+0", "not a phone number"),
        ("1", "too short"),
        ("00", "too short"),
        ("12345678901234567890", "too long (20 digits"),
        ("+12345678901234567890", "too long (20 digits"),
        ("+1555", "too short for region US"),
        ("+15550100", "too short for region US (a local number without its area code)"),
        ("+15551230001", "not a valid number for region US"),
        ("+4915", "too short for region DE"),
        ("+999123456", "no country has this calling code"),
        ("2015550123", "needs a region"),
        ("00123", "needs a region"),  # "00" starts an international number, not a short code
    ],
)
def test_what_the_carrier_would_refuse_is_refused_saying_why(address: str, why: str) -> None:
    with pytest.raises(ApiError) as caught:
        normalise_recipient(address, "to[3]", NumberRules())
    assert caught.value.status == 422 and caught.value.field == "to[3]"
    assert why in caught.value.message and repr(address) in caught.value.message


@pytest.mark.parametrize(
    ("address", "rules", "stored"),
    [
        ("+12015550123", NumberRules(), "+12015550123"),
        ("+4915112345678", NumberRules(), "+4915112345678"),
        ("2015550123", NumberRules("US"), "+12015550123"),
        ("12015550123", NumberRules("US"), "+12015550123"),  # the national prefix 1
        ("01149 15112345678".replace(" ", ""), NumberRules("US"), "+4915112345678"),
        ("015112345678", NumberRules("DE"), "+4915112345678"),
        ("004915112345678", NumberRules("DE"), "+4915112345678"),
        ("123", NumberRules(), "123"),
        ("12345", NumberRules("US"), "12345"),
        ("12345678", NumberRules(), "12345678"),
        ("alice@example.com", NumberRules(), "alice@example.com"),
        # the way out for ranges libphonenumber does not know: a possible length is enough
        ("+15551230001", NumberRules(check="possible"), "+15551230001"),
        ("+447700900123", NumberRules(check="possible"), "+447700900123"),
    ],
)
def test_numbers_are_stored_in_e164_and_the_rest_as_given(
    address: str, rules: NumberRules, stored: str
) -> None:
    assert normalise_recipient(address, "to", rules) == stored


def test_possible_still_refuses_what_no_country_has() -> None:
    for address in ("+1555", "+15550100", "+0", "+12345678901234567890"):
        with pytest.raises(ApiError):
            normalise_recipient(address, "to", NumberRules(check="possible"))


def test_a_valid_national_number_of_the_region_wins_over_a_short_code() -> None:
    # eight digits: a short code without a region; in Denmark a valid national number
    assert normalise_recipient("32123456", "to", NumberRules()) == "32123456"
    assert normalise_recipient("32123456", "to", NumberRules("DK")) == "+4532123456"


# --------------------------------------------------------------------------- the sending API


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ("+1", "not a phone number"),
        ("+0", "not a phone number"),
        ("1", "too short"),
        ("00", "too short"),
        ("12345678901234567890", "too long"),
        ("+15551230001", "not a valid number for region US"),
    ],
)
async def test_the_api_names_the_recipient_and_writes_nothing(api: Any, bad: str, why: str) -> None:
    gw = await api()
    message = await gw.refuse(PLAIN, ["+12015550100", "+12015550101", "+12015550102", bad], "to[3]")
    assert why in message, message
    # a single recipient given as a string is named "to"
    assert why in await gw.refuse(PLAIN, bad, "to")


async def test_national_numbers_need_a_region_from_the_key_or_the_link(api: Any) -> None:
    gw = await api()
    # no region on the key nor on the default link: refused, saying what is needed
    message = await gw.refuse(PLAIN, ["(201) 555-0123"], "to[0]")
    assert "needs a region" in message and "default_region" in message
    # the key's region
    assert await gw.stored(US, {"to": ["(201) 555-0123", "+1 201 555 0125"], "text": "hi"}) == [
        "+12015550123",
        "+12015550125",
    ]
    # the link's region, for a key without one: the link given ...
    body = {"to": "0151 1234 5678", "text": "hi", "link": "de"}
    assert await gw.stored(PLAIN, body) == ["+4915112345678"]
    # ... or the link the number routes to (+49 -> de) when it is E.164 already
    assert await gw.stored(PLAIN, {"to": "+49 151 1234 5679", "text": "hi"}) == ["+4915112345679"]
    # the key's region comes first: "2015550123" on link de is a US number for key "us"
    body = {"to": "2015550124", "text": "hi", "link": "de"}
    assert await gw.stored(US, body) == ["+12015550124"]
    message = await gw.refuse(US, "015112345678", "to")
    assert "region US" in message, message


async def test_short_codes_and_e_mail_pass_and_spellings_of_one_number_repeat(api: Any) -> None:
    gw = await api()
    stored = await gw.stored(US, {"to": ["12345", "bob@example.com", "tel:+1-201-555-0199"],
                                  "text": "hi"})  # fmt: skip
    assert stored == ["12345", "bob@example.com", "+12015550199"]
    message = await gw.refuse(US, ["2015550123", "+1 201 555 0123"], "to[1]")
    assert "repeats to[0] (+12015550123)" in message


async def test_number_check_possible_per_key_and_for_every_key(api: Any) -> None:
    gw = await api()
    # a test range libphonenumber calls invalid: the lab key's operator opted out of "valid"
    assert await gw.stored(LAB, {"to": "+15551230001", "text": "hi"}) == ["+15551230001"]
    await gw.refuse(PLAIN, "+15551230001", "to")
    assert "too short" in await gw.refuse(LAB, "+1555", "to")
    relaxed = await api("possible")
    assert await relaxed.stored(PLAIN, {"to": "+15551230002", "text": "hi"}) == ["+15551230002"]
    # a key that says "valid" keeps it whatever [api] says
    await relaxed.refuse(STRICT, "+15551230003", "to")


@pytest.mark.parametrize(
    ("sender", "why"),
    [
        ("+1", "not a phone number"),
        ("+12", "not a phone number"),
        ("+" + "1" * 20, "too long"),
        ("1" * 20, "too long"),
        ("12", "too short"),
        ("+999123456789", "no country has this calling code"),
        ("+15550100", "too short for region US"),
        ("+15551230001", "not a valid number for region US"),
    ],
)
async def test_a_sender_the_carrier_would_refuse_is_a_422_naming_from(
    api: Any, sender: str, why: str
) -> None:
    gw = await api()
    before = gw.counts()
    status, answer = await gw.send(PLAIN, {"to": "+12015550100", "from": sender, "text": "hi"})
    assert status == 422, answer
    validate("Error", answer)
    assert answer["error"]["field"] == "from" and why in answer["error"]["message"], answer
    assert gw.counts() == before


async def test_senders_valid_before_stay_valid_and_are_kept_as_given(api: Any) -> None:
    gw = await api()
    for sender in ("12345", "777", "12345678", "12025550100", "0012345", "+12025550100",
                   " +1 (202) 555-0100 ", "tel:+18885550100", "news@example.com"):  # fmt: skip
        status, answer = await gw.send(PLAIN, {"to": "+12015550100", "from": sender, "text": "x"})
        assert status == 202, (sender, answer)
        record = await gw.store.get_message(answer["id"])
        assert record is not None
        compact = sender.strip().replace(" ", "").replace("(", "").replace(")", "")
        compact = compact.replace("-", "").removeprefix("tel:")
        assert record.fields["from"] == compact
    # number_check = "possible" takes a test range as a sender too; "valid" does not
    body = {"to": "+12015550100", "from": "+15551230001", "text": "hi"}
    assert (await gw.send(LAB, body))[0] == 202
    assert (await gw.send(STRICT, body))[0] == 422


async def test_a_campaign_is_checked_off_the_event_loop_naming_the_bad_one(
    api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: set[int] = set()
    check = numbers.normalise_recipient

    def watched(address: str, where: str, rules: NumberRules) -> str:
        threads.add(threading.get_ident())
        return check(address, where, rules)

    monkeypatch.setattr(numbers, "normalise_recipient", watched)
    gw = await api()
    assert await gw.stored(PLAIN, {"to": "+12015550100", "text": "one"}) == ["+12015550100"]
    assert threads == {threading.get_ident()}  # a few: on the loop
    threads.clear()
    count = RECIPIENTS_OFF_LOOP + 100
    good = [f"+1202555{n:04d}" for n in range(count)]
    bad = [*good[:250], "+1555", *good[251:]]
    assert "too short" in await gw.refuse(PLAIN, bad, "to[250]")
    assert len(await gw.stored(PLAIN, {"to": good, "text": "all"})) == count
    # about 30 us a number: a campaign's would hold the loop for seconds
    assert threads and threading.get_ident() not in threads


async def test_sendmms_answers_its_error_naming_the_recipient(api: Any) -> None:
    gw = await api()
    before = gw.counts()
    params = {"username": "plain", "password": PLAIN, "to": "+12015550100,+0", "text": "hi"}
    response = await gw.client.get("/cgi-bin/sendmms", params=params)
    assert response.status == 422
    assert await response.text() == "Error: to[1]: '+0': not a phone number"
    assert gw.counts() == before
    # a national number for a key with a region is stored in E.164
    params = {"username": "us", "password": US, "to": "2015550123", "text": "hi"}
    response = await gw.client.get("/cgi-bin/sendmms", params=params)
    text = await response.text()
    assert response.status == 200, text
    record = await gw.store.get_message(text.removeprefix("Accepted: "))
    assert record is not None and [r.address for r in record.recipients] == ["+12015550123"]


# --------------------------------------------------------------------------- config, mm7 send


@pytest.mark.parametrize(
    ("old", "new", "where"),
    [
        ('default_region = "us"', 'default_region = "USA"', "api.keys.us.default_region"),
        ('default_region = "DE"', 'default_region = "XX"', "links.de.default_region"),
        ('number_check = "possible"', 'number_check = "maybe"', "api.keys.lab.number_check"),
        ('number_check = "valid"\n[[', 'number_check = "strict"\n[[', "api.number_check"),
    ],
)
def test_bad_number_settings_stop_the_start_naming_the_key(
    tmp_path: Path, old: str, new: str, where: str
) -> None:
    path = write(tmp_path)
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert where in str(caught.value), caught.value


def test_number_settings_are_read(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "possible"), env={})
    keys = {k.name: k for k in config.api.keys}
    assert config.api.number_check == "possible"
    assert keys["us"].default_region == "US" and keys["plain"].default_region is None
    assert keys["lab"].number_check == "possible" and keys["plain"].number_check is None
    assert config.link("de").default_region == "DE" and config.link("main").default_region is None


async def test_mm7_send_exits_non_zero_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with bound_socket() as mmsc:
        config = load_config(write_config(tmp_path, mmsc.getsockname()[1]), env={})
        gateway = Runtime(config, configure_logs=False, poll_interval=3600, announce=lambda x: None)
        await gateway.start()
        try:
            assert gateway.store is not None
            argv = ["send", "--api-url", str(gateway.api_url), "--api-key", RUNTIME_KEY,
                    "--text", "hi", "--to", "+15551230001"]  # fmt: skip
            status = await asyncio.to_thread(main, argv)
            _, err = capsys.readouterr()
            assert status != 0
            assert (
                "HTTP 422" in err and "to: '+15551230001': not a valid number for region US" in err
            )
            with sqlite3.connect(config.store.path) as conn:
                assert conn.execute("SELECT count(*) FROM messages").fetchone()[0] == 0
        finally:
            await gateway.stop()
