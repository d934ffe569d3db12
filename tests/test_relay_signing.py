"""The relay's request signatures (mm7.service.relay.signing) and the documented 5-line check."""

from __future__ import annotations

import hashlib
import hmac
import textwrap
import time
from collections.abc import Callable
from typing import Any

import pytest

from mm7.service.relay import signing
from mm7.service.relay.signing import sign, signature_header, verify

SECRET = b"hook-secret-1"
BODY = b'{"type":"mo","id":"m1","text":"hello \xc3\xa9"}'
T = 1_790_000_000


def test_sign_is_hmac_sha256_over_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET, b"1790000000." + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, T, BODY) == expected
    assert signature_header(SECRET, T, BODY) == f"t={T},v1={expected}"


def test_round_trip() -> None:
    header = signature_header(SECRET, T, BODY)
    assert verify(SECRET, header, BODY, now=T)
    assert verify(SECRET, header, BODY, now=T + 299)
    assert verify(SECRET, header, BODY, now=T - 299)


def test_fields_in_any_order_and_rotated_secrets() -> None:
    mac = sign(SECRET, T, BODY)
    other = sign(b"old-secret", T, BODY)
    assert verify(SECRET, f"v1={mac},t={T}", BODY, now=T)
    assert verify(SECRET, f"t={T},v1={other},v1={mac}", BODY, now=T)
    assert verify(SECRET, f"t={T}, v0=zz, v1={mac}", BODY, now=T)


def test_changed_body_is_refused() -> None:
    header = signature_header(SECRET, T, BODY)
    assert not verify(SECRET, header, BODY.replace(b"m1", b"m2"), now=T)
    assert not verify(SECRET, header, BODY + b" ", now=T)


def test_wrong_secret_is_refused() -> None:
    header = signature_header(SECRET, T, BODY)
    assert not verify(b"hook-secret-2", header, BODY, now=T)


def test_changed_timestamp_is_refused() -> None:
    mac = sign(SECRET, T, BODY)
    assert not verify(SECRET, f"t={T + 1},v1={mac}", BODY, now=T)


@pytest.mark.parametrize("now", [T + 301, T - 301, T + 86400])
def test_stale_or_future_timestamp_is_refused(now: int) -> None:
    assert not verify(SECRET, signature_header(SECRET, T, BODY), BODY, now=now)


def test_tolerance_is_configurable() -> None:
    header = signature_header(SECRET, T, BODY)
    assert not verify(SECRET, header, BODY, now=T + 61, tolerance=60)
    assert verify(SECRET, header, BODY, now=T + 3600, tolerance=3600)


@pytest.mark.parametrize(
    "make",
    [
        lambda mac: "",
        lambda mac: mac,
        lambda mac: f"v1={mac}",
        lambda mac: f"t={T}",
        lambda mac: f"t={T},v1=",
        lambda mac: f"t=,v1={mac}",
        lambda mac: f"t=abc,v1={mac}",
        lambda mac: f"t=-{T},v1={mac}",
        lambda mac: f"t={T}.5,v1={mac}",
        lambda mac: f"t={T},t={T},v1={mac}",
        lambda mac: f"t={T};v1={mac}",
        lambda mac: f"t={T},v1={mac.upper()}",
        lambda mac: f"t={T},v1={mac[:-1]}",
        lambda mac: f"t={T},v1={mac}0",
        lambda mac: f"t=１７９０,v1={mac}",
        lambda mac: f"t={'9' * 40},v1={mac}",
    ],
)
def test_malformed_headers_are_refused(make: Callable[[str], str]) -> None:
    assert not verify(SECRET, make(sign(SECRET, T, BODY)), BODY, now=T)


def _documented_snippet() -> str:
    doc = signing.__doc__
    assert doc is not None
    start = doc.index("```python\n") + len("```python\n")
    end = doc.index("```", start)
    return textwrap.dedent(doc[start:end])


def test_documented_check_is_five_lines_of_stdlib() -> None:
    snippet = _documented_snippet()
    lines = [line for line in snippet.splitlines() if line.strip()]
    assert len(lines) == 5
    assert lines[0] == "import hashlib, hmac, time"
    assert all("import" not in line for line in lines[1:])


def test_documented_check_verifies_a_signed_request() -> None:
    namespace: dict[str, Any] = {}
    exec(compile(_documented_snippet(), "<signing docstring>", "exec"), namespace)
    verified = namespace["verified"]
    header = signature_header(SECRET, int(time.time()), BODY)
    assert verified(SECRET, header, BODY) is True
    assert verified(b"another-secret", header, BODY) is False
    assert verified(SECRET, header, BODY + b"x") is False
    stale = signature_header(SECRET, int(time.time()) - 3600, BODY)
    assert verified(SECRET, stale, BODY) is False
