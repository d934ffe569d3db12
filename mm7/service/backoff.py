"""The retry delay shared by the MT dispatchers and the relay: exponential backoff, full jitter."""

from __future__ import annotations

import random

__all__ = ["backoff_delay"]


def backoff_delay(
    attempt: int, initial: float, maximum: float, rng: random.Random | None = None
) -> float:
    """Exponential backoff with full jitter: uniform(0, min(maximum, initial * 2^(attempt-1)))."""
    cap = min(maximum, initial * 2 ** max(0, attempt - 1))
    return (rng or random).uniform(0.0, cap)
