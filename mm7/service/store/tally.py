"""Changes counted per transaction and added to the store's totals only once it committed:
what ``StoreStats.fallback_sms`` reports (the SMS fallback's rows by status they reached,
``mm7_fallback_sms_total``).

The statement code notes a change where it writes it (``note``), however deep; the backend
opens a count around each transaction (``counting``) and adds it to its totals after COMMIT, so
a rolled-back or retried transaction counts nothing::

    with counting() as counts:
        run_the_transaction()        # ... note("queued") ...
    totals.update(counts)            # only when it committed

The count in force is a context variable: a transaction's statements run in its caller's
context (PostgreSQL: the caller's task; SQLite: one synchronous call per write).
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
from collections.abc import Iterator

__all__ = ["counting", "note"]

_CURRENT: contextvars.ContextVar[collections.Counter[str] | None] = contextvars.ContextVar(
    "mm7_store_tally", default=None
)


def note(what: str) -> None:
    """Count one ``what`` in the transaction being written (nothing outside ``counting``)."""
    counts = _CURRENT.get()
    if counts is not None:
        counts[what] += 1


@contextlib.contextmanager
def counting() -> Iterator[collections.Counter[str]]:
    """The count of the changes ``note``d inside the block."""
    counts: collections.Counter[str] = collections.Counter()
    token = _CURRENT.set(counts)
    try:
        yield counts
    finally:
        _CURRENT.reset(token)
