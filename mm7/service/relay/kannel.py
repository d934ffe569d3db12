"""Calling a sendmms message's ``dlr-url`` / ``rr-url`` as Kannel and Mbuni clients expect.

Mbuni's mmsbox calls the URL with GET, unchanged, and reports in ``X-Mbuni-*`` headers; Kannel
substitutes %-escapes in its ``dlr-url``. Both are done here, so a URL written for either works:

* the escapes (values percent-encoded; an unknown escape is left as it is): ``%d`` Kannel's
  DLR type (1 delivered, 2 not delivered, 4 buffered, 8 accepted by the MMSC, 16 refused by
  it; read reports: 1 read, 2 deleted or other), ``%A`` the MM7 status as Mbuni reports it
  (Retrieved, Rejected, Forwarded, Read, ...), ``%p`` / ``%q`` the handset (``%q``: a leading
  ``00`` as ``+``), ``%P`` / ``%Q`` the message's sender (empty: the link's), ``%i`` the link,
  ``%I`` the mm7 message id (what ``Accepted:`` answered), ``%F`` the MMSC's MessageID, ``%T``
  the report's time as Unix seconds, ``%t`` as ``YYYY-MM-DD HH:MM`` (UTC), ``%n`` the API key
  name (Kannel's sendsms-user), ``%%`` a percent sign;
* the headers: ``X-Mbuni-Report-Type`` (``delivery-report`` / ``read-report``),
  ``X-Mbuni-MM-Status``, ``X-Mbuni-MMSC-ID``, ``X-Mbuni-From`` (the handset),
  ``X-Mbuni-TransactionID`` (the mm7 message id), ``X-Mbuni-Message-ID`` (the MMSC's) and
  ``X-Mbuni-MM-StatusText`` when the MMSC sent one.

Status events become the reports Mbuni makes itself: ``submitted`` is ``Forwarded`` (the MMSC
accepted the SubmitReq), ``failed`` and ``suppressed`` are ``Rejected``, ``expired`` is
``Expired``; other statuses are not called (``report`` answers None).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

__all__ = ["KannelReport", "report"]

_ESCAPE = re.compile(r"%([dApPqQiIFTtn%])")
_FROM_STATUS = {
    "submitted": "Forwarded",
    "failed": "Rejected",
    "suppressed": "Rejected",
    "expired": "Expired",
}
_DLR_TYPE = {
    "retrieved": 1,
    "deferred": 4,
    "forwarded": 8,
    "indeterminate": 2,
    "expired": 2,
    "rejected": 2,
    "unrecognised": 2,
    "unrecognized": 2,
}


@dataclass(frozen=True, slots=True)
class KannelReport:
    """One call: the URL with the escapes substituted and the ``X-Mbuni-*`` headers."""

    url: str
    headers: dict[str, str]


def _plus(number: str) -> str:
    return "+" + number[2:] if number.startswith("00") else number


def report(event: Mapping[str, Any]) -> KannelReport | None:
    """The GET for a relay event carrying ``kannel`` (``{"url", "from", "user"}``), or None
    when the event is a status Mbuni would not report."""
    info = event["kannel"]
    kind = event.get("type")
    read = kind == "read_reply"
    if kind == "status":
        mm_status = _FROM_STATUS.get(str(event.get("status")))
        if mm_status is None:
            return None
        dlr_type = 16 if mm_status == "Rejected" else 2 if mm_status == "Expired" else 8
    else:
        mm_status = str(event.get("mm_status") or event.get("status") or "")
        if read:
            dlr_type = 1 if mm_status.lower() == "read" else 2
        else:
            dlr_type = _DLR_TYPE.get(mm_status.lower(), 2)
    at = datetime.fromisoformat(str(event["at"]).replace("Z", "+00:00")).astimezone(UTC)
    handset = str(event.get("recipient") or "")
    sender = str(info.get("from") or "")
    values = {
        "d": str(dlr_type),
        "A": mm_status,
        "p": handset,
        "q": _plus(handset),
        "P": sender,
        "Q": _plus(sender),
        "i": str(event.get("link") or ""),
        "I": str(event.get("message_id") or ""),
        "F": str(event.get("mm7_message_id") or ""),
        "T": str(int(at.timestamp())),
        "t": at.strftime("%Y-%m-%d %H:%M"),
        "n": str(info.get("user") or ""),
    }

    def fill(match: re.Match[str]) -> str:
        code = match.group(1)
        return "%" if code == "%" else quote(values[code], safe="")

    headers = {
        "X-Mbuni-Report-Type": "read-report" if read else "delivery-report",
        "X-Mbuni-MM-Status": mm_status,
        "X-Mbuni-MMSC-ID": values["i"],
        "X-Mbuni-From": handset,
        "X-Mbuni-TransactionID": values["I"],
    }
    if values["F"]:
        headers["X-Mbuni-Message-ID"] = values["F"]
    if event.get("status_text"):
        headers["X-Mbuni-MM-StatusText"] = str(event["status_text"])
    return KannelReport(_ESCAPE.sub(fill, str(info["url"])), headers)
