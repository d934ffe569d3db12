"""The interop kit's one error: a target, option or plan it cannot use (an ``MM7Error``, so the
command line reports it in one line with exit status 2)."""

from __future__ import annotations

from mm7.core.errors import MM7Error

__all__ = ["InteropError"]


class InteropError(MM7Error):
    """A target, option or plan the interop kit cannot use; the message names it and why."""
