"""One VASP answer judged as carriers judge it: HTTP 200, a SOAP answer mm7 can read, the
response due, the TransactionID and namespace echoed, the MM7 status due. Pure: bytes in,
problems out, so every rule is testable without a network.

    verdict = check(exchange, Answer(200, "text/xml", body))
    verdict.problems   # () when the answer is right; each problem one sentence naming why

What the peer wrote is quoted through ``peer_text`` (cut short, control characters replaced): a
problem is printed on a terminal and written into a report for someone else to read.
"""

from __future__ import annotations

from dataclasses import dataclass

from mm7.core.codec import decode
from mm7.core.errors import MM7Error
from mm7.core.leniency import Leniency
from mm7.core.model import Fault, Message, Response, Status, VASPErrorRsp
from mm7.core.versions import version_for_namespace
from mm7.interop.peer_text import peer_text
from mm7.interop.vasp_cases import Exchange

__all__ = ["Answer", "Verdict", "check"]


@dataclass(frozen=True, slots=True)
class Answer:
    """What came back over HTTP: status, the headers that matter, the body."""

    http_status: int
    content_type: str | None
    body: bytes
    #: the Location header of a redirect (never followed)
    location: str | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    """Problems (the case fails) and notes (it passes, but a strict MMSC might mind)."""

    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def check(exchange: Exchange, answer: Answer) -> Verdict:
    """Judge ``answer`` to ``exchange``: the problems found in the order a carrier checks."""
    expected = exchange.expected
    success = 1000 <= exchange.status < 2000
    status = answer.http_status
    if 300 <= status < 400:
        where = f" to {peer_text(answer.location)}" if answer.location else ""
        return Verdict((f"HTTP {status} redirect{where} (redirects are not followed)",))
    if status in (401, 403):
        return Verdict(
            (
                f"HTTP {status}: the VASP refused the MMSC's credentials or address "
                "(check --user/--password-env, the TLS client certificate, its allow-list)",
            )
        )
    problems: list[str] = []
    if success and status != 200:
        problems.append(f"HTTP {status}, expected 200")
    elif not success and status not in (200, 500):
        problems.append(f"HTTP {status}, expected 500 (or 200) with a SOAP Fault")
    if not answer.body.strip():
        problems.append(f"a blank body where a {expected} was due")
        return Verdict(tuple(problems))
    try:
        decoded = decode(answer.body, answer.content_type)
    except MM7Error as exc:
        problems.append(f"the answer is not a readable SOAP message: {peer_text(str(exc))}")
        return Verdict(tuple(problems))
    message = decoded.message
    lenient = [str(x) for x in decoded.leniencies]
    if not exchange.echo:  # the request was unreadable: an answer without TransactionID is due
        lenient = [x for x in lenient if x != Leniency.TRANSACTION_ID_MISSING]
    notes = [f"read with leniencies: {', '.join(lenient)}"] if lenient else []
    answered = _operation(message)
    if success and answered != expected:
        problems.append(f"answered {answered}, expected {expected}")
    elif not success and not isinstance(message, Fault | VASPErrorRsp):
        problems.append(f"answered {answered}, expected a SOAP Fault with a VASPErrorRsp")
    if exchange.echo:
        problems.extend(_echo_problems(exchange, message))
        sent_version = exchange.request.mm7_version or exchange.dialect.effective_mm7_version
        if message.mm7_version is not None and message.mm7_version != sent_version:
            notes.append(
                f"MM7Version {peer_text(message.mm7_version, 20)} answered, {sent_version} sent"
            )
    found = _status(message)
    if found is None:
        problems.append(f"no MM7 status in the answer, expected {exchange.status}")
    elif found.code != exchange.status:
        text = f" {peer_text(found.text, 60)!r}" if found.text else ""
        details = f" ({peer_text(found.details)})" if found.details else ""
        problems.append(f"status {found.code}{text}{details}, expected {exchange.status}")
    return Verdict(tuple(problems), tuple(notes))


def _echo_problems(exchange: Exchange, message: Message) -> list[str]:
    problems = []
    sent_id = exchange.request.transaction_id
    if message.transaction_id != sent_id:
        got = message.transaction_id
        answered = f"answered {peer_text(got, 60)!r}" if got else "the answer has none"
        problems.append(f"TransactionID not echoed: sent {sent_id!r}, {answered}")
    if message.namespace != exchange.namespace:
        sent, answered = _ns(exchange.namespace), _ns(message.namespace)
        problems.append(f"namespace not echoed: sent {sent}, answered {answered}")
    return problems


def _ns(namespace: str | None) -> str:
    """A namespace as its schema token when it is a published one."""
    if namespace is None:
        return "none"
    version = version_for_namespace(namespace)
    return version.token if version is not None else repr(peer_text(namespace, 80))


def _operation(message: Message) -> str:
    if isinstance(message, Fault):
        return f"a SOAP Fault ({message.operation})" if message.error else "a SOAP Fault"
    return message.OPERATION


def _status(message: Message) -> Status | None:
    if isinstance(message, Fault):
        return message.status
    if isinstance(message, Response):
        return message.status
    return None
