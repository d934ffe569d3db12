"""When a worker process exits, restart it or give up: the rule shared by the parents of
``mm7 serve --workers`` and ``mm7 simulate --workers`` (pure: the parents do the I/O).

    failed, step = after_exit(worker.index, code, started=started, ready=worker.ready,
                              failed_starts=worker.failed_starts, limit=3, restart_delay=1.0)
    worker.failed_starts = failed
    match step:
        case GiveUp(reason): stop the others, exit 1
        case Restart(delay): start it again after ``delay`` seconds

A worker that exits before every worker was ready once stops them all (a bad configuration
would fail each the same way). Later, a worker that dies is restarted after ``restart_delay``,
doubled for each restart in a row that exited before it was ready (up to ``MAX_DELAY``); after
``limit`` such failures in a row, the parent gives up.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MAX_DELAY", "GiveUp", "Restart", "after_exit"]

#: the longest wait before a restart, in seconds
MAX_DELAY = 30.0


@dataclass(frozen=True, slots=True)
class Restart:
    """Start the worker again after ``delay`` seconds."""

    delay: float


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Stop every worker: ``reason`` says why, without the program's name."""

    reason: str


def after_exit(
    index: int,
    code: int,
    *,
    started: bool,
    ready: bool,
    failed_starts: int,
    limit: int,
    restart_delay: float,
) -> tuple[int, Restart | GiveUp]:
    """Worker ``index`` exited with ``code``: its failed starts in a row now, and what to do.
    ``started``: every worker was ready once; ``ready``: this one was, before it exited."""
    if not started and not ready:
        return failed_starts, GiveUp(
            f"worker {index} could not start (exit status {code}); stopping the others"
        )
    if not ready:
        failed_starts += 1
        if failed_starts >= limit:
            return failed_starts, GiveUp(
                f"worker {index} failed to start {failed_starts} times in a row "
                f"(exit status {code}); giving up"
            )
    return failed_starts, Restart(min(MAX_DELAY, restart_delay * 2**failed_starts))
