"""Errors raised by the protocol core; each carries the MM7 status a peer should get back."""

from __future__ import annotations

__all__ = [
    "EmitError",
    "LimitExceededError",
    "MM7Error",
    "ParseError",
    "UnsafeXMLError",
    "ValidationError",
]


class MM7Error(Exception):
    """Base class of every error the protocol core raises."""


class ParseError(MM7Error):
    """Input that cannot be read as MM7: says where, and what was expected.

    ``status_code`` is the MM7 status the spec names for answering it: 2007 (message format
    corrupt) for broken MIME/SOAP, 4004 (validation error) for a schema violation.
    """

    status_code: int = 2007

    def __init__(self, message: str, *, where: str = "", status_code: int | None = None) -> None:
        self.where = where
        if status_code is not None:
            self.status_code = status_code
        super().__init__(f"{where}: {message}" if where else message)


class UnsafeXMLError(ParseError):
    """XML that declares a DTD or entities, or is too deep or too large: refused, never expanded."""


class LimitExceededError(ParseError):
    """Input over a configured bound (total size, parts, nesting depth, decoded size)."""


class ValidationError(ParseError):
    """A well-formed message that breaks the schema of its version."""

    status_code = 4004


class EmitError(MM7Error):
    """A message that cannot be emitted as asked: strict emission refuses what a schema forbids."""
