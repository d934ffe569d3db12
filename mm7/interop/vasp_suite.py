"""The VASP suite run over HTTP: each case's requests POSTed to the VASP's endpoint in order, as
an MMSC sends them, and each answer judged by ``vasp_check``.

    target = Target("https://vasp.example/mm7", auth=BasicAuth("mmsc", Secret(pw)))
    result = await run_suite(target, cases)          # SuiteResult: passed, failed, results

Every wait is bounded: one exchange (connect, send, answer) by ``Target.timeout`` (what carriers
allow: 10 s), the answer's size by ``MAX_ANSWER``, and a VASP that cannot be reached at all by
``MAX_UNREACHABLE`` connection failures in a row, after which the remaining cases are failed
without being sent. Redirects are never followed (they would carry the MMSC's credentials
elsewhere): a 3xx fails the case.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiohttp

from mm7 import __version__
from mm7.core.errors import MM7Error
from mm7.interop.errors import InteropError
from mm7.interop.peer_text import peer_text
from mm7.interop.tls_hint import no_certificate_hint
from mm7.interop.urls import check_peer
from mm7.interop.vasp_cases import Case, Exchange
from mm7.interop.vasp_check import Answer, Verdict, check
from mm7.transport.client_auth import auth_setup, make_ssl_context
from mm7.transport.link import BasicAuth, TLSConfig

__all__ = ["CaseResult", "SuiteResult", "Target", "run_suite"]

#: the biggest answer read (a DeliverRsp is a few hundred bytes)
MAX_ANSWER = 1024 * 1024
#: the share of ``Target.timeout`` a connection may take to be established
CONNECT_SHARE = 0.9
#: connection failures in a row after which the VASP is taken as unreachable
MAX_UNREACHABLE = 3


@dataclass(frozen=True, slots=True)
class Target:
    """The VASP's inbound endpoint and how to reach it."""

    url: str
    #: HTTP Basic credentials the MMSC presents
    auth: BasicAuth | None = None
    #: the CA to verify an https endpoint with (and a client certificate, for mutual TLS);
    #: None: the system's CA store. Verification is never switched off.
    tls: TLSConfig | None = None
    #: seconds one exchange may take, connection included
    timeout: float = 10.0

    def __post_init__(self) -> None:
        check_peer(self.url, tls=self.tls is not None, timeout=self.timeout)


@dataclass(frozen=True, slots=True)
class CaseResult:
    """One case's outcome: ``problem`` says why it failed (None when it passed)."""

    name: str
    version: str
    what: str
    ok: bool
    problem: str | None
    #: time from sending to the whole answer, summed over the case's exchanges
    elapsed_ms: float
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SuiteResult:
    """A whole run: where, when, with which limit, and every case's result in order."""

    url: str
    started: datetime
    timeout: float
    results: tuple[CaseResult, ...] = field(default=())

    @property
    def passed(self) -> int:
        """How many cases passed."""
        return sum(1 for r in self.results if r.ok)

    @property
    def failed(self) -> int:
        """How many cases failed (the command exits 0 only when none did)."""
        return len(self.results) - self.passed


class _Unreachable(Exception):
    """The connection itself failed (refused, reset while connecting, connect timeout)."""


async def run_suite(
    target: Target,
    cases: Sequence[Case],
    *,
    on_result: Callable[[CaseResult], None] | None = None,
) -> SuiteResult:
    """Run ``cases`` in order against ``target``; ``on_result`` hears of each as it ends."""
    ssl_context = _ssl_context(target)
    headers = {"SOAPAction": '""', "User-Agent": f"mm7-interop/{__version__}"}
    headers.update(auth_setup(target.auth).headers)
    started = datetime.now(UTC)
    results: list[CaseResult] = []
    unreachable = 0
    connector = aiohttp.TCPConnector(limit=1, ssl=ssl_context if ssl_context is not None else True)
    # the connection gets most of the limit; a connect timeout is told apart from a slow answer
    timeout = aiohttp.ClientTimeout(sock_connect=target.timeout * CONNECT_SHARE)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, trust_env=False, headers=headers
    ) as session:
        runner = _Runner(session, target)
        for case in cases:
            if unreachable >= MAX_UNREACHABLE:
                result = _not_run(case, unreachable)
            else:
                result, reached = await runner.run(case)
                unreachable = 0 if reached else unreachable + 1
            results.append(result)
            if on_result is not None:
                on_result(result)
    return SuiteResult(target.url, started, target.timeout, tuple(results))


def _ssl_context(target: Target) -> ssl.SSLContext | None:
    try:
        return make_ssl_context(target.tls, link="interop")
    except MM7Error as exc:
        raise InteropError(str(exc).replace("link 'interop': ", "")) from None


def _not_run(case: Case, failures: int) -> CaseResult:
    problem = f"not sent: the VASP could not be reached ({failures} connection failures in a row)"
    return CaseResult(case.name, case.version.token, case.what, False, problem, 0.0)


@dataclass(slots=True)
class _Runner:
    session: aiohttp.ClientSession
    target: Target

    async def run(self, case: Case) -> tuple[CaseResult, bool]:
        """The case's result, and whether the VASP was reached at all."""
        problems: list[str] = []
        notes: list[str] = []
        elapsed = 0.0
        reached = False
        several = len(case.exchanges) > 1
        for exchange in case.exchanges:
            label = f"{exchange.label}: " if several and exchange.label else ""
            started = time.monotonic()
            try:
                verdict = await self.exchange(exchange)
                reached = True
            except _Unreachable as exc:
                verdict = Verdict((str(exc),))
            elapsed += time.monotonic() - started
            if verdict.problems:
                problems.append(label + "; ".join(verdict.problems))
            notes.extend(label + n for n in verdict.notes)
        problem = " | ".join(problems) if problems else None
        result = CaseResult(
            case.name,
            case.version.token,
            case.what,
            problem is None,
            problem,
            round(elapsed * 1000, 1),
            tuple(dict.fromkeys(notes)),
        )
        return result, reached

    async def exchange(self, exchange: Exchange) -> Verdict:
        encoded = exchange.encoded()
        limit = self.target.timeout
        try:
            async with asyncio.timeout(limit):
                async with self.session.post(
                    self.target.url,
                    data=encoded.body,
                    headers={"Content-Type": encoded.content_type},
                    allow_redirects=False,
                ) as rsp:
                    body = await _read(rsp)
                    answer = Answer(
                        rsp.status,
                        rsp.headers.get("Content-Type"),
                        body,
                        rsp.headers.get("Location"),
                    )
        except aiohttp.ConnectionTimeoutError:
            raise _Unreachable(f"no connection within {limit * CONNECT_SHARE:g} s") from None
        except TimeoutError:
            return Verdict((f"no answer within {limit:g} s",))
        except _TooLarge:
            return Verdict((f"an answer over {MAX_ANSWER} bytes",))
        except aiohttp.ClientConnectorError as exc:
            raise _Unreachable(f"cannot connect: {peer_text(str(exc), 200)}") from None
        except aiohttp.ClientError as exc:
            what = peer_text(str(exc), 200) or type(exc).__name__
            problem = f"the connection failed: {type(exc).__name__}: {what}"
            dropped = isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError)
            hint = no_certificate_hint(self.target.url, self.target.tls, dropped=dropped)
            return Verdict((problem + hint,))
        return check(exchange, answer)


class _TooLarge(Exception):
    """The answer passed MAX_ANSWER."""


async def _read(rsp: aiohttp.ClientResponse) -> bytes:
    if rsp.content_length is not None and rsp.content_length > MAX_ANSWER:
        raise _TooLarge
    buf = bytearray()
    async for chunk in rsp.content.iter_chunked(64 * 1024):
        buf += chunk
        if len(buf) > MAX_ANSWER:
            raise _TooLarge
    return bytes(buf)
