"""What a peer wrote, made safe to quote: on a terminal, in a TOML comment, in a report."""

from __future__ import annotations

__all__ = ["QUOTE", "peer_text"]

#: longest piece of the peer's own text quoted by default
QUOTE = 120


def peer_text(text: str | None, limit: int = QUOTE) -> str:
    """``text`` with every non-printable character (line breaks, escapes) as '?', cut at
    ``limit`` characters ('...' marks the cut); '' for None."""
    if text is None:
        return ""
    clean = "".join(c if c.isprintable() else "?" for c in text)
    return clean if len(clean) <= limit else clean[:limit] + "..."
