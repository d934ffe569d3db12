"""Scenarios: the TOML format checked with errors naming the step and key; runs against the
simulator with a real client as the VASP sending and a real VASP receiving (answers in order,
waits on accepted submits, reports, MOs with a shipped image, recycled TransactionIDs, a blank
200 expected); the control API (POST TOML or a name, 409 while one runs, DELETE takes back its
unused faults); ``mm7 simulate scenarios`` and ``--scenario``."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mm7.core.model import DeliverReq, DeliveryReportReq
from mm7.core.status import MMStatus
from mm7.simulator.app import SimulatorConfig, create_simulator_app
from mm7.simulator.scenario import (
    ScenarioError,
    load_scenario,
    load_scenario_file,
    scenario_from_text,
    scenario_names,
)
from mm7.transport.errors import MM7ClientError
from tests.helpers.simulator import Make, Rig, Vasp, submit

SHIPPED = {
    "carrier-throttling",
    "duplicate-reports",
    "late-reports",
    "recycled-transaction-ids",
    "slow-answers",
}


def test_shipped_scenarios_load_and_are_listed() -> None:
    assert set(scenario_names()) >= SHIPPED
    for name in SHIPPED:
        scenario = load_scenario(name)
        assert scenario.description and scenario.steps


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[[step]]\ndo = 'dance'\n", "step 1: do: 'dance' is not one of"),
        ("description = 'x'\n", "no steps"),
        ("colour = 1\n[[step]]\ndo='wait'\nseconds=1\n", "unknown key(s) colour"),
        ("[[step]]\ndo='answer'\nstauts=4006\n", "step 1 (answer): stauts: unknown key"),
        ("[[step]]\ndo='answer'\nstatus=4006\ndelay=1\n", "step 1 (answer): status: give exactly"),
        ("[[step]]\ndo='answer'\nstatus='busy'\n", "step 1 (answer): status: expected a whole"),
        ("[[step]]\ndo='answer'\nfault='explode'\n", "step 1 (answer): fault: 'explode'"),
        ("[[step]]\ndo='answer'\nhttp_status=200\ndetails='x'\n", "details: goes with status"),
        ("[[step]]\ndo='wait'\n", "step 1 (wait): seconds: give exactly one"),
        ("[[step]]\ndo='wait'\nseconds=-1\n", "step 1 (wait): seconds: expected 0 to"),
        (
            "[[step]]\ndo='wait'\nseconds=1\n[[step]]\ndo='report'\nstatus='Lost'\n",
            "step 2 (report): status: 'Lost' is not one of",
        ),
        ("[[step]]\ndo='report'\nexpect='maybe'\n", "step 1 (report): expect:"),
        ("[[step]]\ndo='report'\nrepeat=0\n", "step 1 (report): repeat: expected a whole"),
        ("[[step]]\ndo='mo'\nto='12345'\ntext='x'\n", "step 1 (mo): from: the handset"),
        ("[[step]]\ndo='mo'\nfrom='+12025550009'\ntext='x'\n", "step 1 (mo): to:"),
        ("[[step]]\ndo='mo'\nfrom='1'\nto='2'\n", "step 1 (mo): text: an MO needs"),
        (
            "[[step]]\ndo='mo'\nfrom='1'\nto='2'\nmedia=[{sample='../x'}]\n",
            "media[0].sample: '../x' is not a shipped sample (photo.jpg)",
        ),
        (
            "[[step]]\ndo='mo'\nfrom='1'\nto='2'\nmedia=[{file='/etc/passwd'}]\n",
            "media[0].file: files can be named only in a scenario given to mm7 simulate",
        ),
        ("[[step]]\ndo='mo'\nfrom='1'\nto='2'\nmedia=[{data='!!'}]\n", "media[0].data: not"),
        ("[dlr]\nwhen='sometimes'\n[[step]]\ndo='wait'\nseconds=1\n", "dlr.when"),
        ("[[step]\n", "not valid TOML"),
    ],
)
def test_bad_scenarios_name_the_step_and_key(text: str, named: str) -> None:
    with pytest.raises(ScenarioError) as info:
        scenario_from_text(text, "bad")
    assert named in str(info.value) and "scenario 'bad'" in str(info.value)


def test_a_file_scenario_reads_media_relative_to_itself(tmp_path: Path) -> None:
    (tmp_path / "pic.jpg").write_bytes(load_scenario_photo())
    path = tmp_path / "mine.toml"
    path.write_text("[[step]]\ndo='mo'\nfrom='1'\nto='2'\nmedia=[{file='pic.jpg'}]\n")
    (step,) = load_scenario_file(path).steps
    assert step.media[0].data == load_scenario_photo()
    path.write_text("[[step]]\ndo='mo'\nfrom='1'\nto='2'\nmedia=[{file='gone.jpg'}]\n")
    with pytest.raises(ScenarioError, match=r"step 1 \(mo\): media\[0\]\.file: cannot read"):
        load_scenario_file(path)


def load_scenario_photo() -> bytes:
    from mm7.core.shipped import shipped

    return shipped("samples", "photo.jpg").read_bytes()


async def post_scenario(r: Rig, text: str) -> tuple[int, Any]:
    headers = {"Content-Type": "application/toml"}
    async with (
        aiohttp.ClientSession() as s,
        s.post(r.base + "/control/scenario", data=text.encode(), headers=headers) as rsp,
    ):
        return rsp.status, await rsp.json()


async def finished(r: Rig) -> dict[str, Any]:
    assert r.sim.scenario is not None
    async with asyncio.timeout(20):  # a guard against a hang, not a timing check
        await r.sim.scenario.wait()
    state: dict[str, Any] = await r.control("GET", "/scenario")
    return state


async def test_answers_in_order_then_a_report_for_the_accepted_submit(sim_rig: Make) -> None:
    r = await sim_rig()
    status, state = await post_scenario(
        r,
        """
        [dlr]
        when = "never"
        [[step]]
        do = "answer"
        count = 2
        status = 4006
        details = "slow down"
        [[step]]
        do = "answer"
        http_status = 503
        [[step]]
        do = "wait"
        accepted = 1
        [[step]]
        do = "report"
        status = "Forwarded"
        [[step]]
        do = "report"
        status = "Expired"
        """,
    )
    assert status == 201 and state["state"] == "running"
    codes: list[int | None] = []
    async with r.client() as client:
        for n in range(4):
            try:
                rsp = await client.submit(submit("+15551230001", tid=f"tx-{n}"))
                codes.append(rsp.status.code)
            except MM7ClientError as exc:
                codes.append(exc.code if exc.code is not None else exc.http_status)
    assert codes == [4006, 4006, 503, 1000]
    state = await finished(r)
    assert state["state"] == "passed", state
    assert [s["state"] for s in state["steps"]] == ["done"] * 5
    reports = r.vasp.reports()
    assert [x.mm_status for x in reports] == [MMStatus.FORWARDED, MMStatus.EXPIRED]
    assert {x.message_id for x in reports} == {rsp.message_id}
    assert r.sim.dlr.plan.when == "requested"  # the scenario's plan is gone with it


async def test_recycled_transaction_id_mo_with_image_and_blank_200_expected(
    sim_rig: Make,
) -> None:
    r = await sim_rig(vasp=Vasp(mode="blank", bad=99))
    status, _ = await post_scenario(
        r,
        """
        [[step]]
        do = "mo"
        from = "+12025550009"
        to = ["12345", "12346"]
        text = "one"
        transaction_id = "mmsc-7"
        expect = "blank-200"
        [[step]]
        do = "mo"
        from = "+12025550009"
        to = "12345"
        media = [{ sample = "photo.jpg" }]
        transaction_id = "recycle"
        expect = "blank-200"
        [[step]]
        do = "mo"
        from = "+12025550009"
        to = "12345"
        text = "this one wants 1000"
        """,
    )
    assert status == 201
    state = await finished(r)
    assert [s["state"] for s in state["steps"]] == ["done", "done", "failed"]
    assert "blank" in state["steps"][2]["problem"]
    assert state["state"] == "failed"
    mos = [h.message for h in r.vasp.hits]
    assert all(isinstance(m, DeliverReq) for m in mos)
    assert [m.transaction_id for m in mos[:2]] == ["mmsc-7", "mmsc-7"]
    second = mos[1]
    assert isinstance(second, DeliverReq) and second.content is not None
    assert b"image/jpeg" in r.vasp.hits[1].body


async def test_control_api_runs_by_name_refuses_a_second_and_stops(sim_rig: Make) -> None:
    r = await sim_rig()
    async with aiohttp.ClientSession() as s:
        for name in ("nope", "../personas/nokia", "/etc/hosts.toml"):
            async with s.post(r.base + "/control/scenario", json={"name": name}) as rsp:
                error = (await rsp.json())["error"]
                assert rsp.status == 400 and "carrier-throttling" in error, error
        async with s.post(r.base + "/control/scenario", data=b"x", headers={}) as rsp:
            assert rsp.status == 400 and "TOML" in (await rsp.json())["error"]
        bad = b"[[step]]\ndo='answer'\nstatus=4006\ncount=0\n"
        headers = {"Content-Type": "application/toml"}
        async with s.post(r.base + "/control/scenario", data=bad, headers=headers) as rsp:
            error = (await rsp.json())["error"]
            assert rsp.status == 400 and "step 1 (answer): count" in error
        assert (await r.control("GET", "/scenario"))["state"] is None  # nothing changed
        async with s.post(r.base + "/control/scenario", json={"name": "carrier-throttling"}) as rsp:
            assert rsp.status == 201
        assert len((await r.control("GET", "/faults"))["once"]) == 3
        async with s.post(r.base + "/control/scenario", json={"name": "slow-answers"}) as rsp:
            assert rsp.status == 409 and "is running" in (await rsp.json())["error"]
        async with s.delete(r.base + "/control/scenario") as rsp:
            assert (await rsp.json())["state"] == "stopped"
    assert (await r.control("GET", "/faults"))["once"] == []  # its faults taken back
    listed = await r.control("GET", "/scenarios")
    assert {x["name"] for x in listed["scenarios"]} >= SHIPPED


async def test_a_scenario_that_sends_needs_a_vasp_url(aiohttp_server: Any) -> None:
    server = await aiohttp_server(create_simulator_app(SimulatorConfig()))
    text = b"[[step]]\ndo='report'\nmessage='x'\nrecipient='1'\n"
    headers = {"Content-Type": "application/toml"}
    async with (
        aiohttp.ClientSession() as s,
        s.post(server.make_url("/control/scenario"), data=text, headers=headers) as rsp,
    ):
        assert rsp.status == 409 and "--vasp-url" in (await rsp.json())["error"]


async def test_reports_duplicated_and_recycled(sim_rig: Make) -> None:
    r = await sim_rig()
    status, _ = await post_scenario(r, _shipped_text())
    assert status == 201
    async with r.client() as client:
        rsp = await client.submit(submit("+15551230001", "+15551230002", report=False))
    state = await finished(r)
    assert state["state"] == "passed", state
    reports = [h.message for h in r.vasp.hits]
    assert all(isinstance(m, DeliveryReportReq) for m in reports)
    # 2 recipients x 2 fresh + 2 recycled (the last TransactionID, sent again)
    assert len(reports) == 6 and {m.message_id for m in reports} == {rsp.message_id}
    tids = [m.transaction_id for m in reports]
    assert len(set(tids[:4])) == 4 and tids[4] == tids[5] == tids[3]


def _shipped_text() -> str:
    from mm7.core.shipped import shipped

    return shipped("scenarios", "duplicate-reports.toml").read_text()


async def test_simulate_runs_a_scenario_from_its_start(tmp_path: Path) -> None:
    """`mm7 simulate --scenario` as a process: the scenario's faults are in force at once."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mm7.cli.main", "simulate", "--listen", "127.0.0.1:0",
        "--scenario", "slow-answers",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(60):  # a guard against a hang, not a timing check
            lines = [(await proc.stdout.readline()).decode() for _ in range(3)]
        base = lines[0].split(" on ", 1)[1].split("/mm7", 1)[0]
        assert lines[2].strip() == "mm7 simulator: scenario slow-answers started", lines
        async with aiohttp.ClientSession() as s:
            async with s.get(base + "/control/scenario") as rsp:
                state = await rsp.json()
            async with s.get(base + "/control/faults") as rsp:
                faults = await rsp.json()
        assert state["name"] == "slow-answers" and state["state"] == "running"
        assert [f["delay"] for f in faults["once"]] == [3.0, 12.0]
    finally:
        proc.terminate()
        await proc.wait()
    assert proc.stderr is not None
    logged = (await proc.stderr.read()).decode()
    assert "mm7.simulator.scenario_started" in logged and "scenario_finished" in logged


def test_simulate_scenarios_lists_the_shipped_ones() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "mm7.cli.main", "simulate", "scenarios"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for name in SHIPPED:
        assert f"{name}: " in out


def test_simulate_with_a_bad_scenario_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[[step]]\ndo='answer'\nstatus=99\n")
    for given, named in (
        (str(bad), "step 1 (answer): status"),
        ("nope", "unknown scenario"),
        ("carrier-throttling", "give --vasp-url"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "mm7.cli.main", "simulate", "--listen", "127.0.0.1:0",
             "--scenario", given],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and named in lines[0], done.stderr


def test_the_readme_example_is_a_valid_scenario() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    start = readme.index("### Scenarios")
    section = readme[start : readme.index("\n## ", start)]
    example = section.split("```toml\n", 1)[1].split("```", 1)[0]
    scenario = scenario_from_text(example, "readme")
    kinds = [type(s).__name__ for s in scenario.steps]
    assert kinds == ["AnswerStep", "WaitStep", "SendStep", "WaitStep", "SendStep", "SendStep"]
    for name in SHIPPED:  # and every shipped one is in its table
        assert f"| `{name}` |" in section
