"""Changes counted per transaction and added to the store's totals only once it committed:
what ``StoreStats.fallback_sms`` reports (the SMS fallback's rows by status they reached,
``mm7_fallback_sms_total``).

The statement code notes a change where it writes it (``note``), however deep; the backend
opens a count around each transaction (``counting``) and adds it to its totals after COMMIT, so
a rolled-back or retried transaction counts nothing::

    with counting() as notes:
        run_the_transaction()        # ... note("queued") ...
    totals.update(notes)             # a Counter; only when it committed

A change written in a savepoint that is rolled back is dropped with ``del notes[mark:]``, mark
being ``len(notes)`` before it: one count per batch of SQLite jobs, not one per job.

The count in force is a context variable: a transaction's statements run in its caller's
context (PostgreSQL: the caller's task; SQLite: one synchronous call per write).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

__all__ = ["counting", "note"]

_CURRENT: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "mm7_store_tally", default=None
)


def note(what: str) -> None:
    """Count one ``what`` in the transaction being written (nothing outside ``counting``)."""
    notes = _CURRENT.get()
    if notes is not None:
        notes.append(what)


@contextlib.contextmanager
def counting() -> Iterator[list[str]]:
    """The changes ``note``d inside the block, in order."""
    notes: list[str] = []
    token = _CURRENT.set(notes)
    try:
        yield notes
    finally:
        _CURRENT.reset(token)
