"""Settings of one SMS link, as ``[[sms_links]]`` entries describe them."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["HttpSmsSettings", "SmppSettings"]


@dataclass(frozen=True, slots=True)
class SmppSettings:
    """An SMPP 3.4 transceiver bind to one SMSC; ``password`` is a secret (never logged)."""

    name: str
    host: str
    port: int
    system_id: str
    password: str = field(default="", repr=False)
    system_type: str = ""
    source_addr: str = ""
    source_ton: int = 0
    source_npi: int = 0
    dest_ton: int = 1
    dest_npi: int = 1
    #: submits per second on this bind (each part counts)
    tps: float = 10.0
    #: outstanding submit_sm without a response
    window: int = 10
    #: ask for a delivery receipt (registered_delivery = 1)
    receipts: bool = True
    #: seconds to wait before resubmitting a throttled (0x58) or queue-full (0x14) part
    throttle_delay: float = 1.0
    #: seconds a send may wait for a bind or for throttling to end before SmsUnavailable
    send_timeout: float = 30.0
    reconnect_initial: float = 0.5
    reconnect_max: float = 30.0


@dataclass(frozen=True, slots=True)
class HttpSmsSettings:
    """A Kannel sendsms-style HTTP gateway: ``url`` is a template with {to}, {from}, {text},
    {coding}, {dlr_url} (values URL-encoded); ``password`` is a secret (never logged)."""

    name: str
    url: str
    username: str = ""
    password: str = field(default="", repr=False)
    source_addr: str = ""
    #: public base of our own receipt endpoint; empty = no receipts asked for
    dlr_url_base: str = ""
    tps: float = 10.0
    timeout: float = 10.0
