"""A scenario running against one simulator: its steps in order, each one's state and problem
kept for the control API and the console. Answer steps queue one-shot faults aimed at their
operation (consecutive answer steps all at once, in order) and finish when those are used up;
waits wait on the traffic record, not by polling; send steps go through the simulator's
outbound sender, judged by their ``expect``.

Logged as ``mm7.simulator.scenario_started``, ``...scenario_step`` and ``...scenario_finished``.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog

from mm7.content.parts import ContentError
from mm7.core.model import Address, Request, SubmitReq
from mm7.core.status import MMStatus, ReadStatus
from mm7.simulator.mo import deliver_req, read_reply_req
from mm7.simulator.scenario import AnswerStep, Scenario, SendStep, Step, WaitStep
from mm7.transport.client import new_transaction_id

if TYPE_CHECKING:
    from mm7.simulator.app import Simulator

log = structlog.get_logger("mm7.simulator.scenario")

#: states of a run and of a step
RUNNING, PASSED, FAILED, STOPPED = "running", "passed", "failed", "stopped"
PENDING, DONE = "pending", "done"


@dataclass
class StepState:
    """Where one step is: pending, running, done or failed (with why)."""

    describe: str
    state: str = PENDING
    problem: str | None = None
    #: what its requests got: one entry per request sent (send steps)
    sent: list[dict[str, Any]] = dataclasses.field(default_factory=list)


class ScenarioRun:
    """One run of ``scenario`` on ``sim``: ``start`` it, read ``to_json``, ``stop`` it."""

    def __init__(self, scenario: Scenario, sim: Simulator) -> None:
        self.scenario = scenario
        self.sim = sim
        self.state = RUNNING
        self.steps = [StepState(step.describe()) for step in scenario.steps]
        self.started = datetime.now(UTC)
        self.finished: datetime | None = None
        self._accepted_at_start = sim.accepted_submits
        self._last_transaction_id: str | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop where it is (the faults it queued and did not see used are taken back)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def wait(self) -> str:
        """Wait for the end; the final state."""
        if self._task is not None:
            await asyncio.shield(self._task)
        return self.state

    @property
    def running(self) -> bool:
        return self.state == RUNNING

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.scenario.name,
            "description": self.scenario.description,
            "state": self.state,
            "started": self.started.isoformat(),
            "finished": None if self.finished is None else self.finished.isoformat(),
            "steps": [dataclasses.asdict(s) for s in self.steps],
        }

    async def _run(self) -> None:
        sim = self.sim
        saved_plan = sim.dlr.plan
        if self.scenario.dlr is not None:
            sim.dlr.plan = self.scenario.dlr
        log.info("mm7.simulator.scenario_started", scenario=self.scenario.name)
        queued: list[Any] = []
        try:
            steps = self.scenario.steps
            for number, (step, state) in enumerate(zip(steps, self.steps, strict=True), start=1):
                if isinstance(step, AnswerStep) and not any(s is step.fault for s in queued):
                    # a run of answer steps is queued at once, in order: "the first request
                    # waits 3 s, the second 12 s" holds however close together they come
                    for following in steps[number - 1 :]:
                        if not isinstance(following, AnswerStep):
                            break
                        queued.append(following.fault)
                        sim.faults.queue([following.fault] * following.count)
                state.state = RUNNING
                sim.store.touch()
                state.problem = await self._step(step, state)
                state.state = FAILED if state.problem else DONE
                log.info(
                    "mm7.simulator.scenario_step",
                    scenario=self.scenario.name,
                    step=number,
                    state=state.state,
                    problem=state.problem,
                )
            self.state = FAILED if any(s.state == FAILED for s in self.steps) else PASSED
        except asyncio.CancelledError:
            self.state = STOPPED
            raise
        finally:
            sim.dlr.plan = saved_plan
            for spec in queued:
                sim.faults.withdraw(spec)
            self.finished = datetime.now(UTC)
            sim.store.touch()
            log.info(
                "mm7.simulator.scenario_finished", scenario=self.scenario.name, state=self.state
            )

    async def _step(self, step: Step, state: StepState) -> str | None:
        """Run one step; its problem, None when it went as written."""
        sim = self.sim
        if isinstance(step, AnswerStep):
            spec = step.fault  # queued with its run of answer steps (``_run``)
            await sim.store.wait_for(lambda: not sim.faults.queued(spec), timeout=None)
            return None
        if isinstance(step, WaitStep):
            if step.seconds is not None:
                await sim.config.sleep(step.seconds)
                return None
            wanted = self._accepted_at_start + (step.accepted or 0)
            await sim.store.wait_for(lambda: sim.accepted_submits >= wanted, timeout=None)
            return None
        return await self._send(step, state)

    async def _send(self, step: SendStep, state: StepState) -> str | None:
        if self.sim.config.vasp_url is None:
            return "no VASP URL configured (--vasp-url): nothing can be sent"
        try:
            requests = self._requests(step)
        except (ValueError, ContentError) as exc:
            return str(exc)
        problems: list[str] = []
        for request in requests:
            for _ in range(step.repeat):
                tid = step.transaction_id
                if tid == "recycle":
                    if self._last_transaction_id is None:
                        return "transaction_id = recycle: no earlier request in this scenario"
                    tid = self._last_transaction_id
                sent = dataclasses.replace(request, transaction_id=tid or new_transaction_id())
                delivery = await self.sim.outbound.deliver(
                    sent, expect=step.expect, attempts=step.attempts
                )
                self._last_transaction_id = sent.transaction_id
                state.sent.append(delivery.to_json())
                if delivery.problem is not None:
                    problems.append(f"{sent.OPERATION} {sent.transaction_id}: {delivery.problem}")
        return "; ".join(problems) or None

    def _requests(self, step: SendStep) -> list[Request]:
        """The requests of a send step (before repeat and TransactionID); ValueError why not."""
        sim = self.sim
        if step.kind == "mo":
            return [
                deliver_req(
                    to=step.mo_to,
                    sender=step.mo_from,
                    text=step.text,
                    media=step.media,
                    subject=step.subject,
                    linked_id=step.linked_id,
                )
            ]
        if step.message == "last":
            message_id = sim.last_accepted
            if message_id is None:
                raise ValueError(
                    "message = last: no SubmitReq accepted yet (a wait step with accepted = 1 "
                    "before this one waits for it)"
                )
        else:
            message_id = step.message
        submit = sim.submitted.get(message_id)
        recipients = _recipients(step, submit, message_id)
        sender = Address.guess(
            step.sender
            or (submit.sender_address.value if submit and submit.sender_address else None)
            or sim.config.mmsc_address
        )
        out: list[Request] = []
        for recipient in recipients:
            if step.kind == "report":
                report = sim.dlr.report(
                    submit, message_id, recipient, sender, MMStatus(step.status)
                )
                if step.status_text is not None:
                    report = dataclasses.replace(report, status_text=step.status_text)
                out.append(report)
            else:
                reply: Request = read_reply_req(
                    message_id=message_id,
                    recipient=recipient.value,
                    sender=sender.value,
                    status=ReadStatus(step.status),
                )
                if submit is not None:
                    reply = dataclasses.replace(
                        reply, namespace=submit.namespace, mm7_version=submit.mm7_version
                    )
                out.append(reply)
        return out


def _recipients(step: SendStep, submit: SubmitReq | None, message_id: str) -> list[Address]:
    if step.recipient is not None:
        return [Address.guess(step.recipient)]
    if submit is None:
        raise ValueError(
            f"message {message_id!r} is not one this simulator accepted: name a recipient"
        )
    found = [a for a in submit.recipients.all if not a.display_only]
    if not found:
        raise ValueError(f"message {message_id!r} has no recipient to report on")
    return found
