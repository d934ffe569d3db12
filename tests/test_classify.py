"""The classification table: spec codes, unknown codes by class, HTTP outcomes, transport
outcomes, and per-link overrides (carrier codes)."""

from __future__ import annotations

import pytest

from mm7.core.status import StatusCode
from mm7.transport.classify import (
    OUTCOME_DEFAULTS,
    STATUS_DEFAULTS,
    Classifier,
    Outcome,
    OverrideError,
    Overrides,
    Verdict,
)

T, P = Verdict.TRANSIENT, Verdict.PERMANENT


def test_every_spec_code_has_a_row() -> None:
    assert {int(c) for c in StatusCode} <= set(STATUS_DEFAULTS)


@pytest.mark.parametrize(
    ("code", "verdict"),
    [
        (1000, Verdict.SUCCESS),
        (1100, Verdict.PARTIAL),
        (2000, P),
        (2002, P),
        (2004, P),
        (2007, P),
        (3000, T),
        (3001, T),
        (3002, P),
        (3003, P),
        (4000, T),
        (4001, P),
        (4002, P),
        (4003, P),
        (4004, P),
        (4005, T),
        (4006, T),
        (4007, P),
        (4008, T),
        # unknown codes go by class; outside 1000-4999 transient (VectorCore's 5000)
        (1001, Verdict.SUCCESS),
        (2101, P),
        (2569, P),
        (3510, T),
        (4101, T),
        (5000, T),
        (0, T),
    ],
)
def test_status_defaults(code: int, verdict: Verdict) -> None:
    assert Classifier().status(code) is verdict


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, P),  # a 2xx with no usable body is MALFORMED: do not resend
        (202, P),
        (400, P),
        (401, P),
        (403, P),
        (404, P),
        (408, T),
        (411, P),
        (429, T),
        (500, T),
        (501, P),
        (502, T),
        (503, T),
        (504, T),
        (505, P),
        (599, T),
    ],
)
def test_http_defaults(status: int, verdict: Verdict) -> None:
    assert Classifier().http(status) is verdict


def test_outcome_defaults() -> None:
    c = Classifier()
    for outcome in (
        Outcome.TIMEOUT,
        Outcome.CONNECT_ERROR,
        Outcome.CONNECTION_RESET,
        Outcome.TLS_ERROR,
        Outcome.FAULT_SERVER,
        Outcome.CIRCUIT_OPEN,
    ):
        assert c.outcome(outcome) is T, outcome
    for outcome in (
        Outcome.MALFORMED,
        Outcome.BLANK_200,
        Outcome.UNEXPECTED_RESPONSE,
        Outcome.INVALID_REQUEST,
        Outcome.FAULT_CLIENT,
        Outcome.FAULT_OTHER,
    ):
        assert c.outcome(outcome) is P, outcome
    assert set(OUTCOME_DEFAULTS) == set(Outcome) - {Outcome.MM7_STATUS, Outcome.HTTP_STATUS}
    with pytest.raises(ValueError):
        c.outcome(Outcome.MM7_STATUS)


def test_carrier_overrides_from_configuration() -> None:
    overrides = Overrides.from_mapping(
        {
            "permanent": ["2101-2104", 4101, "4006"],
            "transient": [3002],
            "http_transient": [409],
            "http_permanent": ["503"],
            "outcomes": {"tls-error": "permanent", "malformed": "transient"},
        }
    )
    c = Classifier(overrides)
    assert [c.status(x) for x in (2101, 2104, 2105, 4101, 4006, 3002)] == [P, P, P, P, P, T]
    assert c.http(409) is T and c.http(503) is P and c.http(502) is T
    assert c.outcome(Outcome.TLS_ERROR) is P
    # a 2xx without a usable body follows the MALFORMED override
    assert c.outcome(Outcome.MALFORMED) is T and c.http(200) is T
    # the defaults are untouched
    assert Classifier().status(4006) is T
    table = c.table()
    assert table["status"]["4101"] == "permanent" and table["outcomes"]["tls-error"] == "permanent"


@pytest.mark.parametrize(
    "data",
    [
        {"transient": ["41x"]},
        {"transient": ["4104-4101"]},
        {"transient": [True]},
        {"retry": [4006]},
        {"outcomes": {"tls": "permanent"}},
        {"outcomes": {"tls-error": "maybe"}},
        {"outcomes": ["tls-error"]},
    ],
)
def test_bad_overrides_are_refused_by_name(data: dict[str, object]) -> None:
    with pytest.raises(OverrideError):
        Overrides.from_mapping(data)


def test_verdict_ok() -> None:
    assert Verdict.SUCCESS.ok and Verdict.PARTIAL.ok
    assert not T.ok and not P.ok
