"""The restart rule both worker parents (`mm7 serve --workers`, `mm7 simulate --workers`) use."""

from __future__ import annotations

from mm7.transport.restarts import MAX_DELAY, GiveUp, Restart, after_exit


def decide(**kw: object) -> tuple[int, Restart | GiveUp]:
    args: dict[str, object] = dict(
        started=True, ready=True, failed_starts=0, limit=3, restart_delay=1.0
    )
    args.update(kw)
    return after_exit(2, 1, **args)  # type: ignore[arg-type]


def test_a_worker_that_never_started_before_all_were_ready_stops_them_all() -> None:
    failed, step = decide(started=False, ready=False)
    assert step == GiveUp("worker 2 could not start (exit status 1); stopping the others")
    assert failed == 0


def test_a_worker_that_was_ready_is_restarted_after_the_delay() -> None:
    assert decide() == (0, Restart(1.0))
    # a worker that was ready exits before the others were ever all ready: restarted too
    assert decide(started=False) == (0, Restart(1.0))


def test_failed_restarts_double_the_delay_then_give_up_at_the_limit() -> None:
    assert decide(ready=False, failed_starts=0) == (1, Restart(2.0))
    assert decide(ready=False, failed_starts=1) == (2, Restart(4.0))
    failed, step = decide(ready=False, failed_starts=2)
    assert failed == 3 and isinstance(step, GiveUp)
    assert step.reason == "worker 2 failed to start 3 times in a row (exit status 1); giving up"


def test_the_delay_is_capped() -> None:
    assert decide(ready=False, failed_starts=10, limit=100) == (11, Restart(MAX_DELAY))
