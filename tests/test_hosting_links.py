"""Hosted pages' tokens (mm7.service.hosting.links): what a token names, that only this key's
tokens read, that any changed character is refused, and when one expires."""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime, timedelta

import pytest

from mm7.service.hosting import HostedLinks, HostedToken

KEY = b"hosting-key"
CREATED = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
#: a message id as the stores make them: 12 hex digits of milliseconds, 16 random ones
STORE_ID = "018e0a1b2c3d" + "9f8e7d6c5b4a3928"


def links(ttl: float = 3600.0, key: bytes = KEY) -> HostedLinks:
    return HostedLinks(key, "https://mms.example.com/", ttl)


def test_a_token_names_its_message_and_expiry() -> None:
    token = links().token(STORE_ID, CREATED)
    assert links().read(token) == HostedToken(STORE_ID, int(CREATED.timestamp()) + 3600)
    # short enough for a text message: a store id packs into 47 URL-safe characters
    assert len(token) == 47 and token.replace("-", "").replace("_", "").isalnum()
    url = links().page_url(STORE_ID, CREATED)
    assert url == f"https://mms.example.com/m/{token}"


@pytest.mark.parametrize("message_id", ["ABC", "mo-1/../x", "grüße", "0a1", "a" * 150])
def test_any_message_id_round_trips(message_id: str) -> None:
    hosted = links().read(links().token(message_id, CREATED))
    assert hosted is not None and hosted.message_id == message_id


def test_the_same_message_always_has_the_same_url() -> None:
    # the MMS's text, GET /v1/messages/{id} and a later SMS all carry one URL
    assert links().page_url(STORE_ID, CREATED) == links().page_url(STORE_ID, CREATED)
    assert links().token(STORE_ID, CREATED) != links().token(STORE_ID, CREATED + timedelta(1))


def test_another_key_or_any_changed_character_is_refused() -> None:
    token = links().token(STORE_ID, CREATED)
    assert links(key=b"another key").read(token) is None
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for index, char in enumerate(token):
        for other in alphabet:
            if other != char:
                tampered = token[:index] + other + token[index + 1 :]
                assert links().read(tampered) is None, (index, other)


@pytest.mark.parametrize(
    "bad", ["", "x", "!" * 47, "A" * 47, "=" * 4, "a/b", "A" * 1000, "%41" * 20, " " * 47]
)
def test_what_is_no_token_is_refused(bad: str) -> None:
    assert links().read(bad) is None


def test_a_token_with_another_expiry_is_refused() -> None:
    token = links().token(STORE_ID, CREATED)
    raw = bytearray(base64.urlsafe_b64decode(token + "="))
    raw[4] ^= 1  # the expiry's last byte: one second later
    forged = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    assert links().read(forged) is None


def test_expiry_is_the_ttl_after_acceptance() -> None:
    hosted = links(ttl=60).read(links(ttl=60).token(STORE_ID, CREATED))
    assert hosted is not None
    start = CREATED.timestamp()
    assert not hosted.expired(now=start + 60)
    assert hosted.expired(now=start + 61)


def test_random_tokens_are_refused() -> None:
    for _ in range(2000):
        assert links().read(base64.urlsafe_b64encode(secrets.token_bytes(35)).decode()) is None


def test_bad_settings_and_an_unknown_base_are_refused() -> None:
    with pytest.raises(ValueError, match="key"):
        HostedLinks(b"", "https://x", 1)
    with pytest.raises(ValueError, match="ttl"):
        HostedLinks(KEY, "https://x", 0)
    waiting = HostedLinks(KEY, "", 60)
    with pytest.raises(RuntimeError, match="not known until the API listens"):
        waiting.page_url(STORE_ID, CREATED)
    waiting.base = "http://127.0.0.1:9"
    assert waiting.page_url(STORE_ID, CREATED).startswith("http://127.0.0.1:9/m/")
