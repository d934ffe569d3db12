"""MM7 over HTTP with aiohttp: the client (VASP -> MMSC) and the inbound endpoint (MMSC -> VASP).

Builds on ``mm7.core`` only; usable as a library on its own.

- ``client``: ``MM7Client``, one MMSC link: encode, POST, judge the answer, flow control;
- ``judge``: what an MMSC's answer means (``Result`` or ``MM7ClientError``), pure;
- ``classify``: the table turning MM7 status, HTTP status or transport outcome into a verdict;
- ``link``: ``LinkConfig``, one link's settings (URL, dialect, auth, TLS, limits), pure data;
- ``client_auth``: outbound Basic, Digest, Bearer and mutual TLS with certificate checks;
- ``flow``: per-link TPS token bucket, in-flight bound and circuit breaker;
- ``fanout``: a SubmitReq split by the link's max recipients, one result per recipient;
- ``server``: the inbound endpoint (``create_inbound_app``), its handlers and its pure decision;
- ``inbound_auth``: who is calling the endpoint (Basic, address allow-list, client certificate);
- ``dedupe``: duplicate detection for MMSC retries;
- ``errors``: ``MM7ClientError``, ``HandlerError``, ``BodyTooLarge``, ``LinkConfigError``;
- ``safe_media``: stored media as an answer that cannot act as a page of the server's origin;
- ``wirelog``: the redacted wire log; ``json_post``: blocking JSON POST for command-line tools;
  ``stop_signal``: waiting for SIGINT/SIGTERM.
"""

from mm7.transport.classify import Outcome, OverrideError, Overrides, Verdict
from mm7.transport.client import MM7Client, new_transaction_id
from mm7.transport.dedupe import DuplicateStore, MemoryDedupe, NoDedupe
from mm7.transport.errors import BodyTooLarge, HandlerError, LinkConfigError, MM7ClientError
from mm7.transport.fanout import RecipientOutcome, RecipientResult, submit_fanout
from mm7.transport.flow import BreakerOpen
from mm7.transport.inbound_auth import ClientCertRule, PeerAuth, PeerIdentity, server_ssl_context
from mm7.transport.judge import Answer, Result, judge
from mm7.transport.link import BasicAuth, BearerAuth, DigestAuth, LinkConfig, Secret, TLSConfig
from mm7.transport.server import (
    Handler,
    HandlerResult,
    InboundConfig,
    InboundContext,
    InboundHandlers,
    MM7Inbound,
    Peer,
    create_inbound_app,
)

__all__ = [
    "Answer",
    "BasicAuth",
    "BearerAuth",
    "BodyTooLarge",
    "BreakerOpen",
    "ClientCertRule",
    "DigestAuth",
    "DuplicateStore",
    "Handler",
    "HandlerError",
    "HandlerResult",
    "InboundConfig",
    "InboundContext",
    "InboundHandlers",
    "LinkConfig",
    "LinkConfigError",
    "MM7Client",
    "MM7ClientError",
    "MM7Inbound",
    "MemoryDedupe",
    "NoDedupe",
    "Outcome",
    "OverrideError",
    "Overrides",
    "Peer",
    "PeerAuth",
    "PeerIdentity",
    "RecipientOutcome",
    "RecipientResult",
    "Result",
    "Secret",
    "TLSConfig",
    "Verdict",
    "create_inbound_app",
    "judge",
    "new_transaction_id",
    "server_ssl_context",
    "submit_fanout",
]
