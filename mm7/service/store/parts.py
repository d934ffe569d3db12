"""How the receipts of a long SMS's parts settle its fallback row (``fallback_parts``), sans-I/O:
the worst state wins, so the row is failed at its first failed part and delivered only once
every part is delivered; the stores of both backends decide through ``settle_parts``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from mm7.service.store.records import FallbackStatus

__all__ = ["part_list", "settle_parts"]


def settle_parts(
    parts: Iterable[tuple[str | None, str | None]],
) -> tuple[FallbackStatus, str | None] | None:
    """The final status (and error) of a row from its parts' ``(status, error)`` in order
    (status None: no receipt yet), or None while it must wait for more receipts."""
    waiting, seen = False, False
    for status, error in parts:
        seen = True
        if status == FallbackStatus.FAILED.value:
            return FallbackStatus.FAILED, error
        if status is None:
            waiting = True
    return None if waiting or not seen else (FallbackStatus.DELIVERED, None)


def part_list(sms_id: str, part_ids: Sequence[str]) -> tuple[str, ...]:
    """Every part's id for ``fallback_submitted``: ``part_ids`` with ``sms_id`` first, or
    ``(sms_id,)`` when none are given (one part); ValueError for ids out of that shape."""
    if isinstance(part_ids, str):
        raise TypeError("part_ids: expected a sequence of part ids, not one string")
    parts = tuple(part_ids) or (sms_id,)
    if parts[0] != sms_id or len(set(parts)) != len(parts) or not all(parts):
        raise ValueError(f"part_ids: expected distinct ids, {sms_id!r} first; got {parts!r}")
    return parts
