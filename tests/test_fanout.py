"""Recipient fan-out: split by the link's max-recipients and map each request's result
(success, 1100 partial success, failure) back to every recipient."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from mm7.core.model import Address, SubmitReq
from mm7.transport.client import MM7Client
from mm7.transport.fanout import (
    RecipientOutcome,
    named_in_details,
    split_submit,
    submit_fanout,
)
from mm7.transport.link import LinkConfig
from tests.helpers.fake_mmsc import PATH, FakeMMSC, Seen, fault, ok, submit_req

Server = Callable[..., Awaitable[Any]]
NUMBERS = [f"+1555123000{i}" for i in range(1, 6)]


@pytest.fixture
async def mmsc(aiohttp_server: Server) -> AsyncIterator[tuple[FakeMMSC, str]]:
    fake = FakeMMSC()
    server = await aiohttp_server(fake.app())
    yield fake, str(server.make_url(PATH))


def by_first_recipient(answers: dict[str, Any]) -> Any:
    """Answer each request by its first recipient (requests run concurrently, in any order)."""

    async def behaviour(seen: Seen, request: web.Request) -> web.StreamResponse:
        assert isinstance(seen.message, SubmitReq)
        first = seen.message.recipients.all[0].value
        answer = answers[first]
        return await answer(seen, request)  # type: ignore[no-any-return]

    return behaviour


async def test_five_recipients_max_two_partial_and_failure(mmsc: tuple[FakeMMSC, str]) -> None:
    fake, url = mmsc
    fake.default = by_first_recipient(
        {
            NUMBERS[0]: ok(message_id="A"),
            NUMBERS[2]: ok(1100, message_id="B", details=f"{NUMBERS[3][1:]}/TYPE=PLMN refused"),
            NUMBERS[4]: fault(2002, details="unknown subscriber"),
        }
    )
    request = submit_req(*NUMBERS[:4], cc=(NUMBERS[4],), tid="fan")
    async with MM7Client(LinkConfig(name="fan", url=url, max_recipients=2)) as client:
        results = await submit_fanout(client, request)

    assert len(fake.seen) == 3
    sent = sorted(
        (s.message.transaction_id, [a.value for a in s.message.recipients.all])
        for s in fake.seen
        if isinstance(s.message, SubmitReq)
    )
    assert sent == [
        ("fan-1", NUMBERS[0:2]),
        ("fan-2", NUMBERS[2:4]),
        ("fan-3", NUMBERS[4:5]),
    ]
    assert [r.address.value for r in results] == NUMBERS
    assert [r.field for r in results] == ["to", "to", "to", "to", "cc"]
    assert [r.outcome for r in results] == [
        RecipientOutcome.ACCEPTED,
        RecipientOutcome.ACCEPTED,
        RecipientOutcome.ACCEPTED,
        RecipientOutcome.REJECTED,
        RecipientOutcome.REJECTED,
    ]
    assert [r.message_id for r in results[:4]] == ["A-fan-1", "A-fan-1", "B-fan-2", "B-fan-2"]
    assert results[3].status is not None and results[3].status.code == 1100
    last = results[4]
    assert last.error is not None and last.error.code == 2002 and not last.transient
    assert last.transaction_id == "fan-3" and last.message_id is None
    # the cc recipient went as a cc
    (third,) = [s for s in fake.seen if s.message and s.message.transaction_id == "fan-3"]
    assert isinstance(third.message, SubmitReq)
    assert [a.value for a in third.message.recipients.cc] == [NUMBERS[4]]


async def test_partial_without_names_and_transient_failure(mmsc: tuple[FakeMMSC, str]) -> None:
    fake, url = mmsc
    fake.default = by_first_recipient(
        {
            NUMBERS[0]: ok(1100, details="some recipients failed"),
            NUMBERS[2]: ok(4006),
        }
    )
    async with MM7Client(LinkConfig(name="fan", url=url, max_recipients=2)) as client:
        results = await submit_fanout(client, submit_req(*NUMBERS[:3]))
    assert [r.outcome for r in results] == [
        RecipientOutcome.PARTIAL,
        RecipientOutcome.PARTIAL,
        RecipientOutcome.TRANSIENT,
    ]
    assert results[0].accepted and not results[2].accepted and results[2].transient
    tids = {r.transaction_id for r in results}
    assert len(tids) == 2 and all(t.endswith(("-1", "-2")) for t in tids)


async def test_within_the_limit_is_one_request_with_its_own_transaction_id(
    mmsc: tuple[FakeMMSC, str],
) -> None:
    fake, url = mmsc
    async with MM7Client(LinkConfig(name="fan", url=url, max_recipients=5)) as client:
        results = await submit_fanout(client, submit_req(*NUMBERS[:2], tid="one"))
    assert len(fake.seen) == 1
    assert [r.transaction_id for r in results] == ["one", "one"]
    assert all(r.outcome is RecipientOutcome.ACCEPTED for r in results)


def test_split_keeps_fields_and_order() -> None:
    request = submit_req(NUMBERS[0], cc=tuple(NUMBERS[1:4]), tid="t")
    recipients = dataclasses.replace(request.recipients, bcc=(Address("user@example.com"),))
    request = dataclasses.replace(request, recipients=recipients)
    parts = split_submit(request, 2)
    assert [p.transaction_id for p, _ in parts] == ["t-1", "t-2", "t-3"]
    assert [[a.value for a in p.recipients.to] for p, _ in parts] == [[NUMBERS[0]], [], []]
    assert [len(p.recipients.cc) for p, _ in parts] == [1, 2, 0]
    assert [a.value for a in parts[2][0].recipients.bcc] == ["user@example.com"]
    assert [f for _, group in parts for f, _ in group] == ["to", "cc", "cc", "cc", "bcc"]
    with pytest.raises(ValueError):
        split_submit(request, 0)


def test_named_in_details() -> None:
    addresses = [Address("+15551230001"), Address("15551230002"), Address("a@b.example")]
    assert named_in_details("failed: 15551230001, +15551230002/TYPE=PLMN", addresses) == {0, 1}
    assert named_in_details("<A@B.example> unreachable", addresses) == {2}
    assert named_in_details("tel:+15551230002.", addresses) == {1}
    assert named_in_details("1555123000", addresses) == set()
    assert named_in_details(None, addresses) == set()
