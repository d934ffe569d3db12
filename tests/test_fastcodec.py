"""The API's optional codecs (mm7.service.api.fastcodec): orjson and pybase64 accept exactly what
the stdlib accepts and give the same values; without them (forced here) the stdlib does the work.

The comparisons run against the stdlib itself, on generated input; the API tests at the end post
real requests to a real API app on loopback, once with each set of codecs.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import example, given
from hypothesis import strategies as st
from PIL import Image

from mm7.service.api import fastcodec
from mm7.service.api.app import create_api_app
from mm7.service.store.sqlite.store import SqliteStore
from tests.helpers.api import AUTH, Gateway, make_config
from tests.helpers.json_values import canonical, floats_in, json_values

FAST = fastcodec._orjson is not None and fastcodec._pybase64 is not None
#: the comparisons on generated input compare the extra with the stdlib: without it, nothing to do
needs_fast = pytest.mark.skipif(not FAST, reason="orjson and pybase64 not installed (mm7[fast])")


@pytest.fixture(params=["fast", "stdlib"])
def codecs(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Each test once with orjson and pybase64 (skipped when the extra is absent), once with the
    stdlib forced."""
    if request.param == "fast":
        if not FAST:
            pytest.skip("orjson and pybase64 not installed (pip install 'mm7[fast]')")
    else:
        monkeypatch.setattr(fastcodec, "_orjson", None)
        monkeypatch.setattr(fastcodec, "_pybase64", None)
    yield request.param


def outcome(call: Any, *args: Any) -> tuple[str, Any]:
    """("ok", a canonical form of the value) or ("error", None) when the call raises."""
    try:
        value = call(*args)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        return ("error", None)
    return ("ok", canonical(value))


# --------------------------------------------------------------------------- JSON


@needs_fast
@given(value=json_values, ascii_only=st.booleans(), compact=st.booleans())
def test_loads_gives_what_json_loads_gives_for_any_json_text(
    value: Any, ascii_only: bool, compact: bool
) -> None:
    separators = (",", ":") if compact else None
    text = json.dumps(value, ensure_ascii=ascii_only, separators=separators)
    raw = text.encode("utf-8", "surrogatepass")
    assert outcome(fastcodec.loads, raw) == outcome(json.loads, raw)


@needs_fast
@given(
    raw=st.binary(max_size=40)
    | st.text(alphabet='{}[]":,0123456789.eE+-tfnrul \\aN', max_size=30).map(str.encode)
)
def test_loads_accepts_and_refuses_what_json_loads_does(raw: bytes) -> None:
    assert outcome(fastcodec.loads, raw) == outcome(json.loads, raw)


@pytest.mark.parametrize(
    "raw",
    [
        b"NaN",
        b"[Infinity, -Infinity]",
        b"1e400",
        b"18446744073709551616",
        b"-9223372036854775809",
        b'{"a": [1, 2, {"b": 99999999999999999999999}]}',
        b'"\\ud800"',
        b"\xef\xbb\xbf{}",
        '{"to": "+12015550100"}'.encode("utf-16"),
        b'{"a": 1, "a": 2}',
        b"{not json",
        b"\xff",
        b"",
    ],
)
def test_where_orjson_differs_json_loads_decides(codecs: str, raw: bytes) -> None:
    assert outcome(fastcodec.loads, raw) == outcome(json.loads, raw)


@needs_fast
@given(value=json_values.filter(lambda v: not any(map(math.isnan, floats_in(v)))))
def test_dumps_writes_the_same_json_value(value: Any) -> None:
    assert canonical(json.loads(fastcodec.dumps(value))) == canonical(value)


def test_dumps_falls_back_for_what_orjson_refuses(codecs: str) -> None:
    assert fastcodec.dumps({"a": "\ud800", "n": 2**70}) == json.dumps({"a": "\ud800", "n": 2**70})


# --------------------------------------------------------------------------- base64

b64_texts = st.text(alphabet="QUJDRkxwxyz019+/=-_ \n\té", max_size=14) | st.binary(max_size=40).map(
    lambda data: base64.b64encode(data).decode()
)


@needs_fast
@example(text="0000=")  # excess padding: pybase64 refuses it, the stdlib accepts it
@given(text=b64_texts)
def test_b64decode_accepts_exactly_what_the_stdlib_accepts(text: str) -> None:
    assert outcome(fastcodec.b64decode, text) == outcome(
        lambda t: base64.b64decode(t, validate=True), text
    )


@pytest.mark.parametrize(
    "text",
    ["QQ==", "QR==", "QQ", "QQ=", "A", "", "QQ==QQ==", "QQ===", "Q Q==", "QQ==\n", "é", "-_=="],
)
def test_b64decode_edge_cases(codecs: str, text: str) -> None:
    assert outcome(fastcodec.b64decode, text) == outcome(
        lambda t: base64.b64decode(t, validate=True), text
    )


def test_using_names_the_libraries(codecs: str) -> None:
    expected = (
        {"json": "orjson", "base64": "pybase64"}
        if codecs == "fast"
        else {"json": "json", "base64": "base64"}
    )
    assert fastcodec.using() == expected


# --------------------------------------------------------------------------- the API, both ways


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    config = make_config(tmp_path, allow_private=False)
    store = await SqliteStore.open(config.store.path)
    client = TestClient(TestServer(create_api_app(config, store), host="127.0.0.1", port=0))
    await client.start_server()
    yield Gateway(client, store, config.store.path)
    await client.close()
    await store.close()


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (16, 12), "green").save(out, "PNG")
    return out.getvalue()


async def post_raw(gw: Gateway, raw: bytes) -> tuple[int, Any]:
    response = await gw.client.post(
        "/v1/messages", data=raw, headers={**AUTH, "Content-Type": "application/json"}
    )
    return response.status, await response.json()


async def test_api_accepts_inline_media_and_answers_the_same(codecs: str, gw: Gateway) -> None:
    image = png()
    body = {
        "to": ["+12015550100"],
        "text": "Grüße",
        "media": [
            {"content_base64": base64.b64encode(image).decode(), "content_type": "image/png"}
        ],
        "idempotency_key": "k-1",
    }
    status, answer = await gw.post(body)
    assert status == 202, answer
    assert answer["status"] == "queued"
    record = await gw.store.get_message(answer["id"])
    assert record is not None
    assert record.parts[0].content_type == "image/png"
    assert dict(record.fields)["text"] == "Grüße"
    status, again = await gw.post(body)
    assert (status, again) == (200, {"id": answer["id"], "status": "duplicate"})


async def test_api_refuses_bad_base64_naming_the_field(codecs: str, gw: Gateway) -> None:
    before = gw.counts()
    for bad in ["QQ", "QQ==\n", "-_==", "QQ==QQ==", "é"]:
        body = {
            "to": "+12015550100",
            "media": [{"content_base64": bad, "content_type": "image/png"}],
        }
        status, answer = await gw.post(body)
        assert status == 422, (bad, answer)
        assert answer["error"]["field"] == "media[0].content_base64"
        assert answer["error"]["message"] == "not valid base64"
    assert gw.counts() == before


async def test_api_reads_json_the_stdlib_way(codecs: str, gw: Gateway) -> None:
    before = gw.counts()
    status, answer = await post_raw(gw, b"{not json")
    assert status == 400
    assert answer["error"]["message"].startswith("the body is not valid JSON: Expecting")
    # NaN is JSON to json.loads (orjson refuses it): the validation, not the parser, answers
    status, answer = await post_raw(gw, b'{"to": "+12015550100", "text": "x", "priority": NaN}')
    assert status in (400, 422) and answer["error"]["field"] == "priority", answer
    # an integer beyond 64 bits stays an int (orjson would read a float)
    big = b'{"to": "+12015550100", "text": "x", "priority": 18446744073709551616}'
    status, big_answer = await post_raw(gw, big)
    status_small, small_answer = await post_raw(
        gw, b'{"to": "+12015550100", "text": "x", "priority": 7}'
    )
    assert (status, big_answer["error"]["message"]) == (
        status_small,
        small_answer["error"]["message"],
    )
    assert gw.counts() == before


async def test_api_refuses_a_deeply_nested_body_as_bad_json(codecs: str, gw: Gateway) -> None:
    before = gw.counts()
    for depth in (600, 5000):  # past orjson's 1024 levels and past json.loads's recursion limit
        body = b'{"to": "+12015550100", "text": ' + b"[" * depth + b"]" * depth + b"}"
        status, answer = await post_raw(gw, body)
        assert status in (400, 422), (depth, answer)
        if depth == 5000:
            assert answer["error"]["message"] == "the body is not valid JSON: nested too deeply"
    assert gw.counts() == before
