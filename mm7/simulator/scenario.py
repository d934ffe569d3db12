"""Scenarios: a TOML script of what the simulated MMSC does, in order. Read and checked here
(every error names the step and the key); run by ``mm7.simulator.scenario_run``.

    description = "The first 3 submits are throttled (4006), then accepted and reported"
    [dlr]                       # optional: the delivery-report plan while the scenario runs
    when = "never"              # (mm7.simulator.dlr.DlrPlan keys)

    [[step]]
    do = "answer"               # how the next requests are answered
    count = 3                   # this many (default 1)
    operation = "SubmitReq"     # of this operation (default SubmitReq; "any": every one)
    status = 4006               # an MM7 status (1000: answered normally), or instead:
    # details = "throttled"     #   with status: the Details
    # http_status = 503         #   a bare HTTP error
    # delay = 12.0              #   answered normally after this many seconds
    # fault = "reset"           #   reset | truncate | malformed-xml | unauthorized

    # consecutive answer steps are queued together: the first matching request gets the
    # first, the next one the second, however close together they come

    [[step]]
    do = "wait"
    accepted = 1                # until this many SubmitReqs were accepted since the start
    # seconds = 2.0             # or: this long

    [[step]]
    do = "report"               # a DeliveryReportReq for each recipient of a message
    status = "Forwarded"        # an MMStatus (default Retrieved)
    # message = "last"          # the last SubmitReq accepted (default), or a MessageID
    # recipient = "+12025550001"  # only this one (default: every recipient)
    # repeat = 2                # sent this many times (each a fresh TransactionID)
    # transaction_id = "recycle"  # the TransactionID of the scenario's previous request
    # expect = 1000             # what the VASP must answer: 1000 (default, TransactionID
    #                           # echoed), "blank-200", "either" (1000 or a blank 200), a code
    # attempts = 1              # tries while the answer is not the one expected (default 1)

    [[step]]
    do = "mo"                   # a DeliverReq from a handset (same repeat .. attempts keys)
    from = "+12025550009"
    to = "12345"                # or a list
    text = "hello"
    subject = "a photo"
    media = [{ sample = "photo.jpg" }]   # or { file = "x.jpg" } (mm7 simulate --scenario
                                         # only, relative to the file), or { data = base64,
                                         # content_type = "image/png", filename = "a.png" }

    [[step]]
    do = "read_reply"           # a ReadReplyReq (status Read by default; message, recipient..)

Shipped scenarios live in ``mm7/conf/scenarios``; a deployment's ``conf/scenarios`` (or
``$MM7_SCENARIOS_DIR``) adds to and overrides them by name, as for personas.
"""

from __future__ import annotations

import base64
import binascii
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mm7.content.parts import Source
from mm7.core.errors import MM7Error
from mm7.core.shipped import shipped
from mm7.core.status import MMStatus, ReadStatus
from mm7.simulator.dlr import DlrConfigError, DlrPlan, Expect
from mm7.simulator.faults import FaultConfigError, FaultSpec

SCENARIOS_ENV = "MM7_SCENARIOS_DIR"
LOCAL_DIR = Path("conf") / "scenarios"
DEFAULT_DIR = shipped("scenarios")
SAMPLES_DIR = shipped("samples")
STEP_KINDS = ("answer", "wait", "report", "read_reply", "mo")
#: faults an answer step can name with ``fault =``
ANSWER_FAULTS = ("reset", "truncate", "malformed-xml", "unauthorized")
#: the longest wait or delay a step may ask for, in seconds (a typo of minutes for seconds)
MAX_SECONDS = 3600.0
MAX_COUNT = 10_000

_COMMON_SEND = {"do", "repeat", "transaction_id", "expect", "attempts"}
_KEYS: dict[str, set[str]] = {
    "answer": {"do", "count", "operation", "status", "details", "http_status", "delay", "fault"},
    "wait": {"do", "accepted", "seconds"},
    "report": _COMMON_SEND | {"status", "message", "recipient", "sender", "status_text"},
    "read_reply": _COMMON_SEND | {"status", "message", "recipient", "sender"},
    "mo": _COMMON_SEND | {"from", "to", "text", "subject", "media", "linked_id"},
}


class ScenarioError(MM7Error):
    """A scenario that cannot run; the message names the scenario, the step and the key."""


@dataclass(frozen=True, slots=True)
class AnswerStep:
    """The next ``count`` requests of ``operation`` (None: any) get ``fault``."""

    count: int
    operation: str | None
    fault: FaultSpec

    def describe(self) -> str:
        what = self.fault.to_json()
        kind = what.pop("kind")
        if kind == "accept":
            shown = "answered normally (1000)"
        elif kind == "status":
            shown = f"answered {what['code']}"
        elif kind == "latency":
            shown = f"answered after {what['delay']} s"
        elif kind == "http":
            shown = f"answered HTTP {what['http_status']}"
        else:
            shown = f"answered with a {kind} fault"
        return f"the next {self.count} {self.operation or 'request'}(s) {shown}"


@dataclass(frozen=True, slots=True)
class WaitStep:
    """Wait ``seconds``, or until ``accepted`` SubmitReqs were accepted since the start."""

    seconds: float | None = None
    accepted: int | None = None

    def describe(self) -> str:
        if self.seconds is not None:
            return f"wait {self.seconds} s"
        return f"wait until {self.accepted} SubmitReq(s) accepted"


@dataclass(frozen=True, slots=True)
class SendStep:
    """A request the simulator sends to the VASP: ``report``, ``read_reply`` or ``mo``."""

    kind: str
    #: report / read_reply: the MMStatus or read status; their message ("last" or an id),
    #: recipient (None: every recipient of the message) and sender (None: the submit's)
    status: str = ""
    message: str = "last"
    recipient: str | None = None
    sender: str | None = None
    status_text: str | None = None
    #: mo: the handset, the VASP's addresses, text, subject and media
    mo_from: str = ""
    mo_to: tuple[str, ...] = ()
    text: str | None = None
    subject: str | None = None
    media: tuple[Source, ...] = ()
    linked_id: str | None = None
    repeat: int = 1
    #: None: a fresh one each; "recycle": the scenario's previous request's; else as given
    transaction_id: str | None = None
    expect: Expect = Expect()
    expect_text: str = "1000"
    attempts: int = 1

    def describe(self) -> str:
        times = f" x{self.repeat}" if self.repeat > 1 else ""
        tid = f", TransactionID {self.transaction_id}" if self.transaction_id else ""
        if self.kind == "mo":
            media = f" + {len(self.media)} media" if self.media else ""
            what = f"MO DeliverReq from {self.mo_from}{media}"
        else:
            op = "DeliveryReportReq" if self.kind == "report" else "ReadReplyReq"
            which = "the last accepted SubmitReq" if self.message == "last" else self.message
            what = f"{op} {self.status} for {which}"
        return f"{what}{times}{tid}, expecting {self.expect_text}"


Step = AnswerStep | WaitStep | SendStep


@dataclass(frozen=True, slots=True)
class Scenario:
    """A checked scenario, ready to run."""

    name: str
    description: str
    steps: tuple[Step, ...]
    #: the delivery-report plan while it runs; None: the simulator's own
    dlr: DlrPlan | None = None

    @property
    def sends(self) -> bool:
        """Whether a step sends to the VASP (which then must be configured)."""
        return any(isinstance(s, SendStep) for s in self.steps)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "steps": [s.describe() for s in self.steps],
        }


class _Reader:
    """Reads one step's table, each error naming the step and the key."""

    def __init__(self, where: str, table: Mapping[str, Any]) -> None:
        self.where = where
        self.table = table

    def fail(self, key: str, why: str) -> ScenarioError:
        return ScenarioError(f"{self.where}: {key}: {why}")

    def text(self, key: str, default: str | None = None) -> str | None:
        value = self.table.get(key, default)
        if value is not None and (not isinstance(value, str) or not value):
            raise self.fail(key, f"expected a non-empty string, got {value!r}")
        return value

    def integer(self, key: str, default: int | None, low: int, high: int) -> int | None:
        value = self.table.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail(key, f"expected a whole number from {low} to {high}, got {value!r}")
        return value

    def seconds(self, key: str) -> float | None:
        value = self.table.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, f"expected seconds (a number), got {value!r}")
        if not 0 <= value <= MAX_SECONDS:
            raise self.fail(key, f"expected 0 to {MAX_SECONDS:g} seconds, got {value!r}")
        return float(value)


def parse_scenario(data: Mapping[str, Any], name: str, *, base_dir: Path | None = None) -> Scenario:
    """A Scenario from a parsed TOML document. ``base_dir``: where ``media = [{file = ...}]``
    is read from; None (the control API) refuses files."""
    where = f"scenario {name!r}"
    unknown = sorted(set(data) - {"description", "dlr", "step"})
    if unknown:
        raise ScenarioError(f"{where}: unknown key(s) {', '.join(unknown)}; known: "
                            "description, dlr, step")  # fmt: skip
    description = data.get("description", "")
    if not isinstance(description, str):
        raise ScenarioError(f"{where}: description: expected a string")
    dlr: DlrPlan | None = None
    if "dlr" in data:
        if not isinstance(data["dlr"], Mapping):
            raise ScenarioError(f"{where}: [dlr] must be a table")
        try:
            dlr = DlrPlan.from_mapping(data["dlr"])
        except DlrConfigError as exc:
            raise ScenarioError(f"{where}: {exc}") from None
    raw_steps = data.get("step")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise ScenarioError(f"{where}: no steps: add [[step]] tables, each with do = one of "
                            f"{', '.join(STEP_KINDS)}")  # fmt: skip
    steps: list[Step] = []
    for number, table in enumerate(raw_steps, start=1):
        if not isinstance(table, Mapping):
            raise ScenarioError(f"{where}: step {number}: expected a [[step]] table")
        kind = table.get("do")
        if kind not in STEP_KINDS:
            raise ScenarioError(
                f"{where}: step {number}: do: {kind!r} is not one of {', '.join(STEP_KINDS)}"
            )
        reader = _Reader(f"{where}: step {number} ({kind})", table)
        extra = sorted(set(table) - _KEYS[kind])
        if extra:
            allowed = ", ".join(sorted(_KEYS[kind] - {"do"}))
            raise reader.fail(", ".join(extra), f"unknown key(s) here; allowed: {allowed}")
        if kind == "answer":
            steps.append(_answer(reader))
        elif kind == "wait":
            steps.append(_wait(reader))
        else:
            steps.append(_send(reader, kind, base_dir))
    return Scenario(name, description, tuple(steps), dlr)


def _answer(r: _Reader) -> AnswerStep:
    count = r.integer("count", 1, 1, MAX_COUNT) or 1
    operation = r.text("operation", "SubmitReq")
    chosen = [k for k in ("status", "http_status", "delay", "fault") if k in r.table]
    if len(chosen) != 1:
        raise r.fail(
            "status",
            "give exactly one of status, http_status, delay, fault "
            f"(got {', '.join(chosen) or 'none'})",
        )
    if "details" in r.table and chosen != ["status"]:
        raise r.fail("details", "goes with status only")
    spec: dict[str, Any] = {}
    key = chosen[0]
    if key == "status":
        code = r.integer("status", None, 1000, 9999)
        spec = {"kind": "accept"} if code == 1000 else {"kind": "status", "code": code}
        if "details" in r.table:
            spec["details"] = r.text("details")
    elif key == "http_status":
        spec = {"kind": "http", "http_status": r.integer("http_status", None, 100, 599)}
    elif key == "delay":
        spec = {"kind": "latency", "delay": r.seconds("delay")}
    else:
        fault = r.table["fault"]
        if fault not in ANSWER_FAULTS:
            raise r.fail("fault", f"{fault!r} is not one of {', '.join(ANSWER_FAULTS)}")
        spec = {"kind": fault}
    if operation != "any":
        spec["operation"] = operation
    try:
        built = FaultSpec.from_mapping(spec)
    except FaultConfigError as exc:
        raise r.fail(key, str(exc)) from None
    return AnswerStep(count, None if operation == "any" else operation, built)


def _wait(r: _Reader) -> WaitStep:
    seconds = r.seconds("seconds")
    accepted = r.integer("accepted", None, 1, MAX_COUNT)
    if (seconds is None) == (accepted is None):
        raise r.fail("seconds", "give exactly one of seconds, accepted")
    return WaitStep(seconds, accepted)


def _expect(r: _Reader) -> tuple[Expect, str]:
    value = r.table.get("expect", 1000)
    if value == "blank-200":
        return Expect(1000, "require"), value
    if value == "either":
        return Expect(1000, "accept"), value
    if isinstance(value, int) and not isinstance(value, bool) and 1000 <= value <= 9999:
        return Expect(value, "refuse"), str(value)
    raise r.fail("expect", f'1000, "blank-200", "either" or an MM7 status code; got {value!r}')


def _send(r: _Reader, kind: str, base_dir: Path | None) -> SendStep:
    expect, expect_text = _expect(r)
    common: dict[str, Any] = {
        "repeat": r.integer("repeat", 1, 1, 100),
        "transaction_id": r.text("transaction_id"),
        "expect": expect,
        "expect_text": expect_text,
        "attempts": r.integer("attempts", 1, 1, 100),
    }
    if kind == "mo":
        sender = r.text("from")
        if sender is None:
            raise r.fail("from", "the handset's number is required")
        to = r.table.get("to")
        recipients = [to] if isinstance(to, str) else to
        if (
            not isinstance(recipients, list)
            or not recipients
            or not all(isinstance(x, str) and x for x in recipients)
        ):
            raise r.fail("to", "an address (or a list of them) is required")
        media = _media(r, base_dir)
        text = r.text("text")
        if text is None and not media:
            raise r.fail("text", "an MO needs text or media")
        return SendStep(
            kind,
            mo_from=sender,
            mo_to=tuple(recipients),
            text=text,
            subject=r.text("subject"),
            media=media,
            linked_id=r.text("linked_id"),
            **common,
        )
    statuses = [str(s) for s in (MMStatus if kind == "report" else ReadStatus)]
    status = r.text("status", "Retrieved" if kind == "report" else "Read")
    if status not in statuses:
        raise r.fail("status", f"{status!r} is not one of {', '.join(statuses)}")
    return SendStep(
        kind,
        status=status or "",
        message=r.text("message", "last") or "last",
        recipient=r.text("recipient"),
        sender=r.text("sender"),
        status_text=r.text("status_text") if kind == "report" else None,
        **common,
    )


def _media(r: _Reader, base_dir: Path | None) -> tuple[Source, ...]:
    items = r.table.get("media", [])
    if not isinstance(items, list):
        raise r.fail("media", "expected a list of { sample | file | data } tables")
    out: list[Source] = []
    for index, item in enumerate(items):
        key = f"media[{index}]"
        if not isinstance(item, Mapping) or len({"sample", "file", "data"} & set(item)) != 1:
            raise r.fail(key, "a table with exactly one of sample, file, data")
        extra = sorted(set(item) - {"sample", "file", "data", "content_type", "filename"})
        if extra:
            raise r.fail(key, f"unknown key(s) {', '.join(extra)}")
        content_type = item.get("content_type")
        filename = item.get("filename")
        if "sample" in item:
            sample = str(item["sample"])
            path = SAMPLES_DIR / sample
            if "/" in sample or "\\" in sample or not path.is_file():
                known = ", ".join(sorted(p.name for p in SAMPLES_DIR.iterdir() if p.is_file()))
                raise r.fail(f"{key}.sample", f"{sample!r} is not a shipped sample ({known})")
            data, filename = path.read_bytes(), filename or sample
        elif "file" in item:
            if base_dir is None:
                raise r.fail(
                    f"{key}.file",
                    "files can be named only in a scenario given to mm7 simulate --scenario; "
                    "send the bytes as data (base64) or name a sample",
                )
            path = base_dir / str(item["file"])
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise r.fail(f"{key}.file", f"cannot read {path}: {exc.strerror}") from None
            filename = filename or path.name
        else:
            try:
                data = base64.b64decode(str(item["data"]), validate=True)
            except binascii.Error:
                raise r.fail(f"{key}.data", "not base64") from None
        out.append(Source(data, filename=filename, media_type=content_type))
    return tuple(out)


def scenario_from_text(text: str, name: str, *, base_dir: Path | None = None) -> Scenario:
    """A Scenario from TOML text (the control API's body, a file's content)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"scenario {name!r}: not valid TOML: {exc}") from None
    return parse_scenario(data, name, base_dir=base_dir)


def load_scenario_file(path: Path) -> Scenario:
    """The scenario in one TOML file, named after the file; files it names are relative to it."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return scenario_from_text(text, path.stem, base_dir=path.parent)


def scenarios_dirs() -> tuple[Path, ...]:
    """Folders scenarios are read from, first match wins: $MM7_SCENARIOS_DIR alone when set;
    else the working directory's conf/scenarios, then the shipped ones."""
    env = os.environ.get(SCENARIOS_ENV)
    return (Path(env),) if env else (LOCAL_DIR, DEFAULT_DIR)


def scenario_names() -> list[str]:
    """Every scenario name known, sorted."""
    return sorted({p.stem for f in scenarios_dirs() if f.is_dir() for p in f.glob("*.toml")})


def load_scenario(name: str) -> Scenario:
    """A scenario by name (``scenarios_dirs``), or by path when ``name`` ends in .toml."""
    if name.endswith(".toml"):
        return load_scenario_file(Path(name))
    for folder in scenarios_dirs():
        path = folder / f"{name}.toml"
        if path.is_file():
            return load_scenario_file(path)
    raise ScenarioError(
        f"unknown scenario {name!r}; known: {', '.join(scenario_names()) or '(none)'}"
    )
