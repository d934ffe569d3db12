"""`mm7 relay list|retry|drop|counts` on a real SQLite database named by a real config file
(PostgreSQL: test_relay_cli_pg.py).

Events are made through the store as the gateway makes them (an MO stored with its relay event,
leased and given up on: a dead letter). Most runs call ``main([...])`` in-process; one runs the
installed ``mm7`` script as a subprocess while the store stays open in the test, as it would be
in a running gateway, and the open store then leases the requeued event.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path

import pytest

from mm7.cli.main import EXIT_OK, EXIT_UNREADABLE
from mm7.service import cli as service_cli
from mm7.service.store.outbox import MoRelay, RelayKind, RelayStatus
from mm7.service.store.records import NewMessage, NewMo
from mm7.service.store.sqlite.store import SqliteStore
from tests.helpers.cli import MM7, assert_one_line_failure, run

LEASE = timedelta(minutes=1)


def write_config(tmp_path: Path, db: Path) -> Path:
    path = tmp_path / "gateway.toml"
    # only [store] is read: secrets the gateway needs are not
    path.write_text(
        f'[links.main]\nurl = "http://127.0.0.1:9/mm7"\n'
        f'[[api.keys]]\nname = "app"\nkey_env = "NOT_SET_HERE"\n'
        f'[store]\nbackend = "sqlite"\npath = "{db.as_posix()}"\n'
    )
    return path


async def add_mo(store: SqliteStore, n: int, hook: str = "app") -> str:
    event = {"type": "mo", "from": f"+1555000{n}", "to": ["12345"], "text": f"mo {n}"}
    result = await store.store_mo(
        NewMo(
            link="main",
            transaction_id=f"tx-{n}",
            mm7_message_id=None,
            fields=event,
            relay=MoRelay(hook=hook, route="r", media="url", event=event),
        )
    )
    return result.mo_id


async def kill(store: SqliteStore, mo_id: str) -> int:
    """Lease the MO's event and give up on it (a dead letter); its id."""
    items = await store.lease_relay("worker", 100, LEASE)
    target = next(i for i in items if i.source_id == mo_id)
    for item in items:
        if item is not target:
            await store.release_relay(item)
    assert await store.relay_outcome(target, "dead", http_status=502, error="HTTP 502\nbad gateway")
    return target.id


async def leasable(store: SqliteStore) -> set[int]:
    items = await store.lease_relay("probe", 1000, LEASE)
    for item in items:
        await store.release_relay(item)
    return {i.id for i in items}


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path, dict[str, int]]:
    """A config, its database and events: dead1 (app), dead2 (other), pending (app)."""
    db = tmp_path / "var" / "mm7.sqlite"
    db.parent.mkdir()

    async def make() -> dict[str, int]:
        store = await SqliteStore.open(db)
        try:
            dead1 = await kill(store, await add_mo(store, 1, "app"))
            dead2 = await kill(store, await add_mo(store, 2, "other"))
            pending_mo = await add_mo(store, 3, "app")
            pending = next(r.id for r in await store.relay_events() if r.source_id == pending_mo)
            return {"dead1": dead1, "dead2": dead2, "pending": pending}
        finally:
            await store.close()

    return write_config(tmp_path, db), db, asyncio.run(make())


def statuses(db: Path) -> dict[int, str]:
    async def read() -> dict[int, str]:
        store = await SqliteStore.open(db)
        try:
            return {r.id: r.status.value for r in await store.relay_events(limit=1000)}
        finally:
            await store.close()

    return asyncio.run(read())


def test_the_cli_knows_every_status_and_kind() -> None:
    assert tuple(s.value for s in RelayStatus) == service_cli.RELAY_STATUSES
    assert tuple(k.value for k in RelayKind) == service_cli.RELAY_KINDS


def test_list_shows_dead_letters_by_default(
    capsys: pytest.CaptureFixture[str], setup: tuple[Path, Path, dict[str, int]]
) -> None:
    config, _, ids = setup
    code, out, err = run(capsys, "relay", "list", "--config", str(config))
    assert (code, err) == (EXIT_OK, "")
    lines = out.splitlines()
    assert lines[0].split() == [
        "ID", "STATUS", "KIND", "HOOK", "TRIES", "HTTP", "UPDATED", "SOURCE", "ERROR",
    ]  # fmt: skip
    rows = [line.split() for line in lines[1:]]
    assert [(int(r[0]), r[1], r[3], r[5]) for r in rows] == [
        (ids["dead1"], "dead", "app", "502"),
        (ids["dead2"], "dead", "other", "502"),
    ]
    assert lines[1].endswith("HTTP 502 bad gateway")  # the error on one line

    code, out, _ = run(capsys, "relay", "list", "--config", str(config), "--status", "all")
    assert [int(line.split()[0]) for line in out.splitlines()[1:]] == sorted(ids.values())
    code, out, _ = run(capsys, "relay", "list", "--config", str(config), "--hook", "other")
    assert [int(line.split()[0]) for line in out.splitlines()[1:]] == [ids["dead2"]]
    code, out, _ = run(capsys, "relay", "list", "--config", str(config), "--status", "dropped")
    assert (code, out) == (EXIT_OK, "no dropped relay events\n")

    code, out, err = run(
        capsys, "relay", "list", "--config", str(config), "--status", "all", "--json",
        "--limit", "2",
    )  # fmt: skip
    assert code == EXIT_OK
    views = json.loads(out)
    assert [v["id"] for v in views] == [ids["dead1"], ids["dead2"]]
    assert views[0]["status"] == "dead" and views[0]["event"]["text"] == "mo 1"
    assert f"--after {ids['dead2']}" in err
    code, out, _ = run(
        capsys, "relay", "list", "--config", str(config), "--status", "all", "--json",
        "--after", str(ids["dead2"]),
    )  # fmt: skip
    assert [v["id"] for v in json.loads(out)] == [ids["pending"]]


def test_retry_and_drop_change_what_they_say(
    capsys: pytest.CaptureFixture[str], setup: tuple[Path, Path, dict[str, int]]
) -> None:
    config, db, ids = setup
    code, out, err = run(capsys, "relay", "retry", "--config", str(config), str(ids["dead1"]))
    assert (code, out, err) == (EXIT_OK, f"requeued {ids['dead1']}\n", "")
    assert statuses(db)[ids["dead1"]] == "pending"

    code, out, err = run(
        capsys, "relay", "drop", "--config", str(config), str(ids["pending"]), str(ids["dead2"])
    )
    assert (code, err) == (EXIT_OK, "")
    assert out == f"dropped {ids['pending']}\ndropped {ids['dead2']}\n"
    now = statuses(db)
    assert (now[ids["pending"]], now[ids["dead2"]]) == ("dropped", "dropped")

    async def probe() -> set[int]:
        store = await SqliteStore.open(db)
        try:
            return await leasable(store)
        finally:
            await store.close()

    assert asyncio.run(probe()) == {ids["dead1"]}

    # an unknown id and one in the wrong state: the others are still done, exit 1
    code, out, err = run(
        capsys, "relay", "retry", "--config", str(config), "999", str(ids["dead1"]),
        str(ids["dead2"]),
    )  # fmt: skip
    assert code == 1
    assert out == f"requeued {ids['dead2']}\n"
    assert err.splitlines() == [
        "mm7 relay retry: 999: no such relay event",
        f"mm7 relay retry: {ids['dead1']}: it is pending; only dead or dropped events can be "
        "requeued",
    ]
    code, out, err = run(capsys, "relay", "drop", "--config", str(config), str(ids["pending"]))
    assert code == 1 and "it is dropped; only dead or pending" in err


def test_retry_all_dead_and_counts(
    capsys: pytest.CaptureFixture[str], setup: tuple[Path, Path, dict[str, int]]
) -> None:
    config, db, ids = setup
    code, out, _ = run(capsys, "relay", "counts", "--config", str(config))
    assert code == EXIT_OK
    assert out.splitlines() == ["pending 1", "delivered 0", "dead 2", "dropped 0", "skipped 0"]
    code, out, err = run(capsys, "relay", "retry", "--all-dead", "--config", str(config))
    assert (code, out, err) == (EXIT_OK, "requeued 2 dead relay events\n", "")
    code, out, _ = run(capsys, "relay", "counts", "--json", "--config", str(config))
    assert json.loads(out) == {
        "pending": 3, "delivered": 0, "dead": 0, "dropped": 0, "skipped": 0,
    }  # fmt: skip
    assert set(statuses(db).values()) == {"pending"}


@pytest.mark.parametrize(
    "args",
    [
        ["relay"],
        ["relay", "retry"],
        ["relay", "retry", "abc"],
        ["relay", "retry", "0"],
        ["relay", "retry", "1", "--all-dead"],
        ["relay", "drop"],
        ["relay", "drop", "-5"],
        ["relay", "list", "--status", "deadd"],
        ["relay", "list", "--limit", "0"],
        ["relay", "list", "--kind", "sms"],
    ],
)
def test_bad_options_are_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], setup: tuple[Path, Path, dict[str, int]], args: list[str]
) -> None:
    config, db, _ = setup
    before = statuses(db)
    code, out, err = run(capsys, *args, "--config", str(config))
    assert code == EXIT_UNREADABLE, err
    assert out == "" and "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith("mm7"), err
    assert statuses(db) == before


def test_bad_config_or_database(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(capsys, "relay", "counts", "--config", str(tmp_path / "nope.toml"))
    assert "nope.toml" in assert_one_line_failure(code, out, err, "relay")

    missing = write_config(tmp_path, tmp_path / "absent.sqlite")
    code, out, err = run(capsys, "relay", "list", "--config", str(missing))
    assert "no database at" in assert_one_line_failure(code, out, err, "relay")
    assert not (tmp_path / "absent.sqlite").exists()  # not created by looking

    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not a database, " * 100)
    code, out, err = run(
        capsys, "relay", "counts", "--config", str(write_config(tmp_path, garbage))
    )
    assert "cannot open the database" in assert_one_line_failure(code, out, err, "relay")

    bad = tmp_path / "bad.toml"
    bad.write_text("[store\npath = 1")
    code, out, err = run(capsys, "relay", "counts", "--config", str(bad))
    assert "not valid TOML" in assert_one_line_failure(code, out, err, "relay")

    pg = tmp_path / "pg.toml"  # nothing listens on port 1
    pg.write_text(
        '[store]\nbackend = "postgresql"\ndsn = "postgresql://u:n0t-shown@127.0.0.1:1/gw"\n'
    )
    code, out, err = run(capsys, "relay", "counts", "--config", str(pg))
    line = assert_one_line_failure(code, out, err, "relay")
    assert line.startswith("mm7 relay: cannot open the store: postgresql://127.0.0.1:1/gw: ")
    assert "n0t-shown" not in line


def test_default_config_is_conf_gateway_toml(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "conf").mkdir()
    write_config(tmp_path / "conf", Path("var/mm7.sqlite"))
    (tmp_path / "var").mkdir()

    async def make() -> None:
        store = await SqliteStore.open(tmp_path / "var" / "mm7.sqlite")
        await kill(store, await add_mo(store, 1))
        await store.close()

    asyncio.run(make())
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "relay", "counts")
    assert (code, err) == (EXIT_OK, "")
    assert "dead 1" in out.splitlines()


async def test_retry_from_another_process_while_the_store_is_open(tmp_path: Path) -> None:
    """The gateway's store stays open (WAL): the CLI requeues, the open store leases it."""
    db = tmp_path / "mm7.sqlite"
    config = write_config(tmp_path, db)
    store = await SqliteStore.open(db)
    try:
        dead = await kill(store, await add_mo(store, 1))
        assert await leasable(store) == set()
        process = await asyncio.create_subprocess_exec(
            *MM7, "relay", "retry", str(dead), "--config", str(config),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0, err
        assert out.decode() == f"requeued {dead}\n"
        items = await store.lease_relay("worker", 10, LEASE)
        assert [i.id for i in items] == [dead] and items[0].attempt == 1
        process = await asyncio.create_subprocess_exec(
            *MM7, "relay", "list", "--status", "pending", "--json", "--config", str(config),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0, err
        assert [v["id"] for v in json.loads(out)] == [dead]
    finally:
        await store.close()


def test_list_names_the_status_hook_and_the_whole_reason(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    db = tmp_path / "gw.sqlite"
    reason = "HTTP 500: " + "the application could not store the status, see its log " * 3

    async def make() -> None:
        store = await SqliteStore.open(db, relay_all_statuses=True)
        try:
            await store.enqueue_message(NewMessage(link="main", fields={}), ["+15551230001"])
            for sent in await store.lease("main", "dispatcher", 10, LEASE):
                assert await store.complete(sent, "MM7-1", 1000, "Success")  # a status event
            [item] = await store.lease_relay("worker", 10, LEASE)
            assert item.kind is RelayKind.STATUS and item.hook is None
            assert await store.relay_outcome(
                item, "dead", http_status=500, error=reason[:200], hook="status-app"
            )
        finally:
            await store.close()

    asyncio.run(make())
    code, out, _ = run(capsys, "relay", "list", "--config", str(write_config(tmp_path, db)))
    assert code == EXIT_OK
    [row] = out.splitlines()[1:]
    assert row.split()[1:4] == ["dead", "status", "status-app"]
    assert row.endswith(reason[:200].rstrip())  # the whole stored reason, not cut at 80
