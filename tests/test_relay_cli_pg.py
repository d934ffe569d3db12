"""`mm7 relay list|retry|drop|counts` on PostgreSQL: the installed `mm7` command as a real
process, on a fresh database named by a config whose ``[store] dsn_env`` the environment fills,
while a store stays open in the test as in a running gateway instance (which the retry wakes,
through the database's notification, not at its next poll)."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path

from mm7.service.store import MoRelay, NewMo, RelayStatus, Store
from tests.helpers.cli import MM7
from tests.helpers.runtime import clean_env
from tests.helpers.stores import pg_database

LEASE = timedelta(minutes=1)
#: trust authentication ignores it: it is there to be looked for in the output
PASSWORD = "pa55-n0t-shown"


def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "gateway.toml"
    # only [store] is read: the secrets of the rest are not set here
    path.write_text(
        '[links.main]\nurl = "http://127.0.0.1:9/mm7"\n'
        '[[api.keys]]\nname = "app"\nkey_env = "NOT_SET_HERE"\n'
        '[store]\nbackend = "postgresql"\ndsn_env = "MM7_RELAY_DSN"\n'
    )
    return path


async def mm7(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *MM7, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def dead_letter(store: Store, n: int, hook: str) -> int:
    """An MO whose relay event was leased and given up on; the event's id."""
    event = {"type": "mo", "from": f"+1555000{n}", "to": ["12345"], "text": f"mo {n}"}
    mo = await store.store_mo(
        NewMo(link="main", transaction_id=f"tx-{n}", mm7_message_id=None, fields=event,
              relay=MoRelay(hook=hook, route="r", media="url", event=event))
    )  # fmt: skip
    (item,) = [i for i in await store.lease_relay("worker", 10, LEASE) if i.source_id == mo.mo_id]
    assert await store.relay_outcome(item, "dead", http_status=502, error="HTTP 502")
    return item.id


async def test_relay_commands_work_on_postgresql(tmp_path: Path) -> None:
    from mm7.service.store.postgres import PostgresStore

    async with pg_database() as dsn:
        config = write_config(tmp_path)
        secret_dsn = dsn.replace("postgresql://postgres@", f"postgresql://postgres:{PASSWORD}@")
        env = {**clean_env(), "MM7_RELAY_DSN": secret_dsn}
        store = await PostgresStore.open(dsn)
        try:
            woken = asyncio.Event()
            store.watch(on_mt=lambda link: None, on_relay=woken.set)
            first = await dead_letter(store, 1, "app")
            second = await dead_letter(store, 2, "other")
            code, out, err = await mm7(env, "relay", "list", "--json", "--config", str(config))
            assert (code, err) == (0, "")
            assert [(v["id"], v["status"], v["hook"]) for v in json.loads(out)] == [
                (first, "dead", "app"),
                (second, "dead", "other"),
            ]
            code, out, err = await mm7(env, "relay", "counts", "--json", "--config", str(config))
            assert (code, err) == (0, "") and json.loads(out)["dead"] == 2
            woken.clear()
            code, out, err = await mm7(env, "relay", "retry", str(first), "--config", str(config))
            assert (code, out, err) == (0, f"requeued {first}\n", "")
            await asyncio.wait_for(woken.wait(), 30)  # the running instance's relay is woken
            (item,) = await store.lease_relay("worker", 10, LEASE)
            assert item.id == first and item.attempt == 1
            await store.release_relay(item)
            code, out, err = await mm7(env, "relay", "drop", str(second), "--config", str(config))
            assert (code, out, err) == (0, f"dropped {second}\n", "")
            # an event in another state is named, and the exit status says so
            code, out, err = await mm7(env, "relay", "retry", str(first), "--config", str(config))
            assert code == 1 and out == ""
            assert err == (
                f"mm7 relay retry: {first}: it is pending; only dead or dropped events can be"
                " requeued\n"
            )
            records = {r.id: r.status for r in await store.relay_events(limit=10)}
            assert records == {first: RelayStatus.PENDING, second: RelayStatus.DROPPED}
            code, out, err = await mm7(env, "relay", "retry", "--all-dead", "--config",
                                       str(config))  # fmt: skip
            assert (code, out, err) == (0, "requeued 0 dead relay events\n", "")
            assert PASSWORD not in out + err
        finally:
            await store.close()


async def test_an_unreachable_or_unset_postgresql_store_is_one_line(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    env = {**clean_env(), "MM7_RELAY_DSN": f"postgresql://mm7:{PASSWORD}@127.0.0.1:1/gw"}
    code, out, err = await mm7(env, "relay", "counts", "--config", str(config))
    assert (code, out) == (2, "")
    assert err.startswith("mm7 relay: cannot open the store: postgresql://127.0.0.1:1/gw: ")
    assert err.count("\n") == 1 and "Traceback" not in err and PASSWORD not in err
    code, out, err = await mm7(clean_env(), "relay", "counts", "--config", str(config))
    assert (code, out) == (2, "")
    assert "store.dsn_env" in err and "MM7_RELAY_DSN" in err and err.count("\n") == 1
