"""``pgdriver``: the PostgreSQL driver for the store, asyncpg against psycopg 3, on our queries.

    cd tools && python -m bench.pgdriver [--quick] [--json]
    python tools/bench.py --only pgdriver

One message's store work on the MT hot path, as the PostgreSQL store issues it: enqueue a
message with one recipient (one statement, its own transaction: message, recipient, event and
the ``NOTIFY``), lease it (``FOR UPDATE SKIP LOCKED`` ... ``RETURNING``), complete it (the
fenced outcome: recipient, counters, event). Each driver runs the same SQL with a pool of 8
connections and 8 concurrent workers (one link each), in interleaved rounds (asyncpg, psycopg,
asyncpg, ...) so that a noisy neighbour hits both alike; each round reports the CPU time of this
process (``time.process_time``: the client's cost, what the gateway pays) per message. The best
round of each counts; ``ratio`` is psycopg's CPU per message over asyncpg's.

Needs a PostgreSQL server (``MM7_TEST_PG_DSN``, default
``postgresql://postgres@127.0.0.1:5432/test``: an admin connection used to create and drop a
scratch database) and both drivers installed; without them it says why and reports nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

ADMIN_DSN = os.environ.get("MM7_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
WORKERS = 8

SCHEMA = (
    """CREATE TABLE messages (
        id TEXT PRIMARY KEY, idempotency_key TEXT UNIQUE, link TEXT NOT NULL,
        fields TEXT NOT NULL, status TEXT NOT NULL, recipient_count INTEGER NOT NULL,
        queued_count INTEGER NOT NULL, submitted_count INTEGER NOT NULL DEFAULT 0,
        created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL, api_key TEXT)""",
    """CREATE TABLE recipients (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        message_id TEXT NOT NULL REFERENCES messages(id), link TEXT NOT NULL,
        address TEXT NOT NULL, address_key TEXT NOT NULL, status TEXT NOT NULL,
        mm7_message_id TEXT, transaction_id TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at BIGINT NOT NULL, expires_at BIGINT, updated_at BIGINT NOT NULL,
        lease_owner TEXT, lease_token TEXT, lease_expires_at BIGINT)""",
    """CREATE INDEX recipients_due ON recipients(link, next_attempt_at, id)
        WHERE status = 'queued'""",
    """CREATE TABLE events (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, message_id TEXT NOT NULL,
        recipient_id BIGINT, kind TEXT NOT NULL, status TEXT, details TEXT NOT NULL,
        at BIGINT NOT NULL)""",
    "CREATE INDEX events_message ON events(message_id, id)",
)

ENQUEUE = """WITH m AS (
    INSERT INTO messages (id, idempotency_key, link, fields, status, recipient_count,
        queued_count, created_at, updated_at, api_key)
    VALUES ($1, $2, $3, $4, 'queued', 1, 1, $5, $5, $6)
    ON CONFLICT (idempotency_key) DO NOTHING RETURNING id
), r AS (
    INSERT INTO recipients (message_id, link, address, address_key, status, transaction_id,
        next_attempt_at, updated_at)
    SELECT m.id, $3, $7, $7, 'queued', m.id || '.0', $5, $5 FROM m
), e AS (
    INSERT INTO events (message_id, kind, status, details, at)
    SELECT m.id, 'queued', 'queued', '{"recipients":1,"parts":0}', $5 FROM m
)
SELECT m.id, pg_notify('mm7_work', 'mt:' || $3) FROM m"""

LEASE = """WITH due AS (
    SELECT id, lease_owner FROM recipients
    WHERE link = $1 AND status = 'queued' AND next_attempt_at <= $2
      AND (lease_expires_at IS NULL OR lease_expires_at <= $2)
    ORDER BY next_attempt_at, id LIMIT $3 FOR UPDATE SKIP LOCKED
)
UPDATE recipients r SET lease_owner = $4, lease_token = $5, lease_expires_at = $6,
    attempts = r.attempts + 1, updated_at = $2
FROM due WHERE r.id = due.id
RETURNING r.id, r.message_id, r.address, r.transaction_id, r.attempts, due.lease_owner"""

COMPLETE = """WITH r AS (
    UPDATE recipients SET status = 'submitted', mm7_message_id = $3, lease_owner = NULL,
        lease_token = NULL, lease_expires_at = NULL, updated_at = $4
    WHERE id = $1 AND lease_token = $2 AND status = 'queued' RETURNING message_id
), m AS (
    UPDATE messages SET queued_count = queued_count - 1, submitted_count = submitted_count + 1,
        status = 'submitted', updated_at = $4
    FROM r WHERE messages.id = r.message_id
), e AS (
    INSERT INTO events (message_id, recipient_id, kind, status, details, at)
    SELECT r.message_id, $1, 'submitted', 'submitted', $5, $4 FROM r
)
SELECT count(*) FROM r"""


class Runner(Protocol):
    """One driver's way to run a statement on a pooled connection."""

    async def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]: ...

    async def close(self) -> None: ...


class AsyncpgRunner:
    """asyncpg: a pool (no reset at release); statements are prepared and cached per connection."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    @classmethod
    async def open(cls, dsn: str) -> AsyncpgRunner:
        import asyncpg

        async def keep(conn: Any) -> None:
            # asyncpg's default resets a connection at every release (a round trip: UNLISTEN,
            # RESET ALL ...); our statements leave no session state, so nothing to reset
            return None

        pool = await asyncpg.create_pool(dsn, min_size=WORKERS, max_size=WORKERS, reset=keep)
        return cls(pool)

    async def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        async with self._pool.acquire() as conn:
            return [tuple(r) for r in await conn.fetch(sql, *args)]

    async def close(self) -> None:
        await self._pool.close()


_DOLLAR = re.compile(r"\$(\d+)")


class PsycopgRunner:
    """psycopg 3 async with psycopg_pool; statements prepared after their first use."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self._converted: dict[str, str] = {}

    @classmethod
    async def open(cls, dsn: str) -> PsycopgRunner:
        from psycopg import AsyncConnection
        from psycopg_pool import AsyncConnectionPool

        async def configure(conn: AsyncConnection[Any]) -> None:
            conn.prepare_threshold = 0  # prepare at once, as asyncpg does
            await conn.set_autocommit(True)

        pool = AsyncConnectionPool(
            dsn, min_size=WORKERS, max_size=WORKERS, configure=configure, open=False
        )
        await pool.open(wait=True)
        return cls(pool)

    def _sql(self, sql: str) -> str:
        # psycopg takes %(name)s: $n becomes %(pn)s, the arguments a dict
        converted = self._converted.get(sql)
        if converted is None:
            converted = _DOLLAR.sub(r"%(p\1)s", sql.replace("%", "%%"))
            self._converted[sql] = converted
        return converted

    async def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        params = {f"p{i}": v for i, v in enumerate(args, start=1)}
        async with self._pool.connection() as conn:
            cursor = await conn.execute(self._sql(sql), params)
            return list(await cursor.fetchall())

    async def close(self) -> None:
        await self._pool.close()


async def one_message(db: Runner, link: str, n: int) -> None:
    """Enqueue, lease and complete one message of ``link``."""
    now = int(time.time() * 1000)
    mid = f"{now:012x}{secrets.token_hex(8)}"
    fields = json.dumps({"api_key": "bench", "subject": "bench", "from": "12345"})
    await db.fetch(ENQUEUE, mid, f"key-{mid}", link, fields, now, "bench", f"+1555{n:07d}")
    token = secrets.token_hex(8)
    rows = await db.fetch(LEASE, link, now, 1, "bench", token, now + 60_000)
    if len(rows) != 1:
        raise AssertionError(f"leased {len(rows)} rows of {link}, expected 1")
    rid = rows[0][0]
    details = json.dumps({"mm7_message_id": f"mmsc-{mid}", "status_code": 1000})
    done = await db.fetch(COMPLETE, rid, token, f"mmsc-{mid}", now, details)
    if done[0][0] != 1:
        raise AssertionError(f"complete of recipient {rid} found no lease")


async def one_round(db: Runner, messages: int) -> float:
    """CPU seconds of this process per message, ``messages`` over WORKERS concurrent links."""
    per_worker = messages // WORKERS

    async def worker(w: int) -> None:
        for i in range(per_worker):
            await one_message(db, f"link{w}", w * per_worker + i)

    start = time.process_time()
    await asyncio.gather(*(worker(w) for w in range(WORKERS)))
    return (time.process_time() - start) / (per_worker * WORKERS)


async def _admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(ADMIN_DSN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _dsn_for(database: str) -> str:
    base, _, _ = ADMIN_DSN.rpartition("/")
    return f"{base}/{database}"


async def measure(quick: bool, say: Callable[[str], None]) -> dict[str, Any]:
    """Interleaved rounds of both drivers on a scratch database; the figures."""
    database = f"mm7_bench_{secrets.token_hex(4)}"
    await _admin(f'CREATE DATABASE "{database}"')
    try:
        dsn = _dsn_for(database)
        import asyncpg

        setup = await asyncpg.connect(dsn)
        try:
            for statement in SCHEMA:
                await setup.execute(statement)
        finally:
            await setup.close()
        openers: dict[str, Callable[[str], Awaitable[Runner]]] = {
            "asyncpg": AsyncpgRunner.open,
            "psycopg": PsycopgRunner.open,
        }
        runners = {name: await opener(dsn) for name, opener in openers.items()}
        try:
            rounds, messages = (3, 400) if quick else (7, 2000)
            for db in runners.values():  # warm up: connections, prepared statements
                await one_round(db, 80)
            best = {name: float("inf") for name in runners}
            for index in range(rounds):
                for name, db in runners.items():
                    cpu = await one_round(db, messages)
                    best[name] = min(best[name], cpu)
                    say(f"  round {index + 1} {name:<8} {cpu * 1e3:.3f} ms CPU per message")
        finally:
            for db in runners.values():
                await db.close()
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    ratio = best["psycopg"] / best["asyncpg"]
    say(
        f"pgdriver: best CPU per message (enqueue + lease + complete): asyncpg"
        f" {best['asyncpg'] * 1e3:.3f} ms, psycopg {best['psycopg'] * 1e3:.3f} ms;"
        f" psycopg / asyncpg = {ratio:.2f}"
    )
    return {
        "asyncpg_cpu_ms_per_msg": round(best["asyncpg"] * 1e3, 4),
        "psycopg_cpu_ms_per_msg": round(best["psycopg"] * 1e3, 4),
        "psycopg_over_asyncpg": round(ratio, 3),
    }


def unavailable() -> str | None:
    """Why the benchmark cannot run here (a driver missing, no server), or None."""
    for module in ("asyncpg", "psycopg", "psycopg_pool"):
        try:
            __import__(module)
        except ImportError:
            return f"{module} is not installed (pip install -e '.[test]')"
    try:
        asyncio.run(_admin("SELECT 1"))
    except (OSError, Exception) as exc:  # asyncpg raises its own errors besides OSError
        return f"no PostgreSQL server at {ADMIN_DSN}: {exc}"
    return None


class SettingsLike(Protocol):
    """What this benchmark uses of tools/bench.py's ``Settings``."""

    quick: bool

    def say(self, line: str = "") -> None: ...


def bench_pgdriver(settings: SettingsLike) -> dict[str, Any]:
    """The registered benchmark: the figures, or nothing (saying why) without a server."""
    settings.say(
        f"pgdriver: enqueue + lease (SKIP LOCKED) + complete per message, {WORKERS} workers"
        " on a pool of as many connections; client CPU per message, interleaved rounds"
    )
    why = unavailable()
    if why is not None:
        settings.say(f"pgdriver: skipped: {why}")
        return {}
    return asyncio.run(measure(settings.quick, settings.say))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds")
    parser.add_argument("--json", action="store_true", help="the figures as JSON on stdout")
    args = parser.parse_args(argv)
    out = sys.stderr if args.json else sys.stdout

    def say(line: str = "") -> None:
        print(line, file=out, flush=True)

    why = unavailable()
    if why is not None:
        say(f"pgdriver: cannot run: {why}")
        return 1
    figures = asyncio.run(measure(args.quick, say))
    if args.json:
        print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
