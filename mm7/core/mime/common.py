"""What several ``mm7.core.mime`` modules share: the leniency recorder and the media-type and
header-name sets that both the parser and the emitter test against."""

from __future__ import annotations

from mm7.core.leniency import Leniency

XML_TYPES = frozenset(
    {"text/xml", "application/xml", "application/soap+xml", "application/xop+xml"}
)
IDENTITY_CTES = frozenset({"7bit", "8bit", "binary"})
MANAGED_HEADERS = frozenset(
    {"content-type", "content-transfer-encoding", "content-id", "content-location"}
)
TOKEN_BYTES = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
TOKEN_STR = TOKEN_BYTES.decode("ascii")


def note(leniencies: list[Leniency] | None, item: Leniency) -> None:
    """Record a leniency once, keeping first-seen order."""
    if leniencies is not None and item not in leniencies:
        leniencies.append(item)
