"""Bounds on what the parser accepts; going over any of them is a clear LimitExceededError."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_LIMITS", "Limits"]


@dataclass(frozen=True, slots=True)
class Limits:
    """Size, count and depth bounds for one parse. The defaults suit a carrier link."""

    max_total_bytes: int = 16 * 1024 * 1024  # whole HTTP body
    max_parts: int = 64  # MIME parts, counted over all nesting levels
    max_depth: int = 4  # multipart nesting depth (outer SwA entity is depth 1)
    max_decoded_bytes: int = 32 * 1024 * 1024  # all part bodies after CTE decoding
    max_header_bytes: int = 16 * 1024  # one part's header block
    max_xml_bytes: int = 1024 * 1024  # the SOAP part
    max_xml_depth: int = 64  # element nesting in the SOAP part


DEFAULT_LIMITS = Limits()
