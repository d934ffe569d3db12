"""The PostgreSQL schema as numbered migrations, applied in order when a store opens.

Every instance opening the database runs ``migrate``: it takes a transaction-scoped advisory
lock (``pg_advisory_xact_lock``), so that instances starting together apply each step once, and
applies what is missing in that one transaction together with the rows that record it in
``schema_version`` (DDL is transactional in PostgreSQL: a crash mid-upgrade leaves the previous
version intact). Never edit a released migration: append a new one. A database whose version is
above ``LATEST`` was written by a newer mm7 and is refused (``SchemaTooNewError``).

The same tables as the SQLite schema at its latest version (``sqlite/migrations.py``), with
these differences:

- times are BIGINT milliseconds since the Unix epoch (UTC), as in SQLite, taken from the store's
  ``Clock`` (never the database's ``now()``), so tests can move time and both backends agree;
- JSON columns are TEXT (written and read as JSON text by the store: no server-side parsing);
  ``messages.api_key`` is a plain column the store fills from the fields at insert;
- media content is BYTEA in ``media`` (every instance reaches it), stored once by sha256
  (``STORAGE EXTERNAL``: media is compressed already, so TOAST does not try again);
- a work item's lease lives on its own row (``lease_owner``, ``lease_token``,
  ``lease_expires_at`` of ``recipients`` and ``relay_outbox``) so that leasing is one
  ``UPDATE ... FROM (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING``; ``lease_token`` is the
  fencing token an outcome must present;
- ``leases`` holds the named leases of the cluster (one holder at a time: a link's dispatcher,
  housekeeping), ``token`` counting the changes of hands; ``seen_requests`` the inbound request
  keys every instance checks for duplicates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mm7.service.errors import SchemaTooNewError
from mm7.service.store.early import PG_LOCK_CLASS

if TYPE_CHECKING:
    import asyncpg


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step: its version number, what it is for, and its statements."""

    version: int
    description: str
    statements: tuple[str, ...]


#: the key of the advisory lock held while migrating ("mm7schm" in ASCII)
MIGRATION_LOCK = 0x6D6D377363686D

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "The whole store: MT, inbound, relay outbox, suppressions, secrets, cluster leases",
        (
            # -- media, by content hash: once however many messages, MOs and instances use it
            """CREATE TABLE media (
                sha256 TEXT PRIMARY KEY,
                content_type TEXT NOT NULL,
                size BIGINT NOT NULL,
                data BYTEA NOT NULL,
                created_at BIGINT NOT NULL
            )""",
            "ALTER TABLE media ALTER COLUMN data SET STORAGE EXTERNAL",
            # retention finds unused media by age without reading the blobs
            "CREATE INDEX media_created ON media(created_at, sha256)",
            # -- MT messages
            """CREATE TABLE messages (
                id TEXT PRIMARY KEY,
                idempotency_key TEXT UNIQUE,
                request_digest TEXT,
                link TEXT NOT NULL,
                api_key TEXT,
                fields TEXT NOT NULL,
                status TEXT NOT NULL,
                recipient_count INTEGER NOT NULL,
                queued_count INTEGER NOT NULL,
                submitted_count INTEGER NOT NULL DEFAULT 0,
                delivered_count INTEGER NOT NULL DEFAULT 0,
                undelivered_count INTEGER NOT NULL DEFAULT 0,
                expired_count INTEGER NOT NULL DEFAULT 0,
                suppressed_count INTEGER NOT NULL DEFAULT 0,
                created_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL,
                expires_at BIGINT,
                not_before BIGINT,
                callback_url TEXT
            )""",
            "CREATE INDEX messages_listed ON messages(api_key, created_at, id)",
            "CREATE INDEX messages_listed_status ON messages(api_key, status, created_at, id)",
            "CREATE INDEX messages_listed_link ON messages(api_key, link, created_at, id)",
            # retention: finished messages by age
            "CREATE INDEX messages_finished ON messages(updated_at) WHERE queued_count <= 0",
            # link and expires_at are copied from the message so that leasing is one indexed
            # scan; address_key is the normalised address that delivery reports match on
            """CREATE TABLE recipients (
                id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                message_id TEXT NOT NULL REFERENCES messages(id),
                link TEXT NOT NULL,
                address TEXT NOT NULL,
                address_key TEXT NOT NULL,
                status TEXT NOT NULL,
                mm7_message_id TEXT,
                transaction_id TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                next_attempt_at BIGINT NOT NULL,
                expires_at BIGINT,
                last_status_code INTEGER,
                last_status_text TEXT,
                updated_at BIGINT NOT NULL,
                lease_owner TEXT,
                lease_token TEXT,
                lease_expires_at BIGINT
            ) WITH (fillfactor = 90)""",
            # the queue: only queued rows are in it, so it stays as small as the backlog
            """CREATE INDEX recipients_due ON recipients(link, next_attempt_at, id)
                WHERE status = 'queued'""",
            "CREATE INDEX recipients_message ON recipients(message_id)",
            """CREATE INDEX recipients_mm7_id ON recipients(link, mm7_message_id)
                WHERE mm7_message_id IS NOT NULL""",
            # to=: the messages of one handset
            "CREATE INDEX recipients_address ON recipients(address_key, message_id)",
            # a STOP finds the sender's queued recipients
            """CREATE INDEX recipients_queued_address ON recipients(address_key)
                WHERE status = 'queued'""",
            """CREATE TABLE message_media (
                message_id TEXT NOT NULL REFERENCES messages(id),
                position INTEGER NOT NULL,
                sha256 TEXT NOT NULL REFERENCES media(sha256),
                content_type TEXT NOT NULL,
                content_id TEXT,
                content_location TEXT,
                PRIMARY KEY (message_id, position)
            )""",
            "CREATE INDEX message_media_sha ON message_media(sha256)",
            """CREATE TABLE events (
                id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                message_id TEXT NOT NULL,
                recipient_id BIGINT,
                kind TEXT NOT NULL,
                status TEXT,
                details TEXT NOT NULL,
                at BIGINT NOT NULL
            )""",
            "CREATE INDEX events_message ON events(message_id, id)",
            # -- inbound: delivery reports (correlated or kept unknown) and MO messages
            """CREATE TABLE delivery_reports (
                id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                link TEXT NOT NULL,
                mm7_message_id TEXT NOT NULL,
                recipient TEXT NOT NULL,
                mm_status TEXT NOT NULL,
                raw_status TEXT NOT NULL,
                status_text TEXT,
                raw TEXT,
                message_id TEXT,
                recipient_id BIGINT,
                received_at BIGINT NOT NULL
            )""",
            "CREATE INDEX delivery_reports_message ON delivery_reports(message_id, id)",
            """CREATE INDEX delivery_reports_unknown ON delivery_reports(id)
                WHERE message_id IS NULL""",
            "CREATE INDEX delivery_reports_received ON delivery_reports(received_at)",
            # MessageID is unique per link (a hard guarantee); TransactionID is checked within
            # a window by the store, because MMSCs recycle small TransactionID counters
            """CREATE TABLE mo_messages (
                id TEXT PRIMARY KEY,
                link TEXT NOT NULL,
                transaction_id TEXT,
                mm7_message_id TEXT,
                fingerprint TEXT,
                fields TEXT NOT NULL,
                status TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                next_attempt_at BIGINT NOT NULL,
                received_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL
            )""",
            """CREATE UNIQUE INDEX mo_mm7_id ON mo_messages(link, mm7_message_id)
                WHERE mm7_message_id IS NOT NULL""",
            """CREATE INDEX mo_transaction ON mo_messages(link, transaction_id, received_at)
                WHERE transaction_id IS NOT NULL""",
            "CREATE INDEX mo_due ON mo_messages(status, next_attempt_at)",
            "CREATE INDEX mo_received ON mo_messages(received_at)",
            """CREATE TABLE mo_media (
                mo_id TEXT NOT NULL REFERENCES mo_messages(id),
                position INTEGER NOT NULL,
                sha256 TEXT NOT NULL REFERENCES media(sha256),
                content_type TEXT NOT NULL,
                content_id TEXT,
                content_location TEXT,
                PRIMARY KEY (mo_id, position)
            )""",
            "CREATE INDEX mo_media_sha ON mo_media(sha256)",
            # -- the relay outbox: one row per event for an application's hook (mo, status,
            # delivery_report, read_reply), written in the same transaction as what it reports.
            # hook NULL: resolved at delivery (the message's callback_url, else the link's
            # status hook). event is the JSON body; an MO's media are added at delivery.
            """CREATE TABLE relay_outbox (
                id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                kind TEXT NOT NULL,
                idempotency_key TEXT NOT NULL UNIQUE,
                hook TEXT,
                callback_url TEXT,
                api_key TEXT,
                link TEXT,
                sender_key TEXT,
                source_id TEXT,
                media TEXT,
                event TEXT NOT NULL,
                status TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                next_attempt_at BIGINT NOT NULL,
                first_attempt_at BIGINT,
                last_http_status INTEGER,
                last_error TEXT,
                created_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL,
                lease_owner TEXT,
                lease_token TEXT,
                lease_expires_at BIGINT
            ) WITH (fillfactor = 90)""",
            """CREATE INDEX relay_due ON relay_outbox(next_attempt_at, id)
                WHERE status = 'pending'""",
            """CREATE INDEX relay_hook_due ON relay_outbox(hook, next_attempt_at, id)
                WHERE status = 'pending'""",
            """CREATE INDEX relay_order ON relay_outbox(hook, sender_key, id)
                WHERE status = 'pending'""",
            "CREATE INDEX relay_api_key ON relay_outbox(api_key, id)",
            # retention: finished events by age
            """CREATE INDEX relay_finished ON relay_outbox(updated_at)
                WHERE status IN ('delivered', 'skipped', 'dropped')""",
            # senders who sent a stop word; the sending API refuses them as recipients
            """CREATE TABLE suppressions (
                address_key TEXT PRIMARY KEY,
                address TEXT NOT NULL,
                word TEXT NOT NULL,
                link TEXT,
                mo_id TEXT,
                created_at BIGINT NOT NULL
            )""",
            "CREATE INDEX suppressions_created ON suppressions(created_at)",
            # secrets the gateway makes for itself once (the media URL signing key)
            """CREATE TABLE store_secrets (
                name TEXT PRIMARY KEY,
                value TEXT NOT NULL,
                created_at BIGINT NOT NULL
            )""",
            # -- the cluster: named leases (a link's dispatcher, housekeeping), held by one
            # instance at a time; token +1 each time the lease changes hands (fencing)
            """CREATE TABLE leases (
                name TEXT PRIMARY KEY,
                owner TEXT NOT NULL,
                token BIGINT NOT NULL,
                expires_at BIGINT NOT NULL
            )""",
            # inbound request keys seen by any instance (duplicate detection), until expiry
            """CREATE TABLE seen_requests (
                key TEXT PRIMARY KEY,
                expires_at BIGINT NOT NULL
            )""",
            "CREATE INDEX seen_requests_expiry ON seen_requests(expires_at)",
        ),
    ),
    Migration(
        2,
        "API key quotas: recipients counted per UTC day, the per-second buckets",
        (
            # recipients each key sent per UTC day ("YYYY-MM-DD"): max_per_day
            """CREATE TABLE api_day_counts (
                api_key TEXT NOT NULL,
                day TEXT NOT NULL,
                used BIGINT NOT NULL,
                PRIMARY KEY (api_key, day)
            )""",
            # each key's max_per_second bucket: its tokens at stamp (ms)
            """CREATE TABLE api_rate_buckets (
                api_key TEXT PRIMARY KEY,
                tokens DOUBLE PRECISION NOT NULL,
                stamp BIGINT NOT NULL
            )""",
        ),
    ),
    Migration(
        3,
        "Early reports: reports and read replies kept until their MessageID is recorded",
        (
            # mm7.service.store.early; the same table as SQLite's migration 8
            """CREATE TABLE early_reports (
                id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                kind TEXT NOT NULL,
                report_id BIGINT,
                link TEXT NOT NULL,
                other_links TEXT NOT NULL,
                mm7_message_id TEXT NOT NULL,
                recipient TEXT NOT NULL,
                alternate TEXT,
                status TEXT NOT NULL,
                status_text TEXT,
                details TEXT NOT NULL,
                received_at BIGINT NOT NULL
            )""",
            "CREATE INDEX early_reports_message ON early_reports(mm7_message_id)",
            "CREATE INDEX early_reports_received ON early_reports(received_at)",
            # Called by every completion, in its statement: the MessageID's lock, shared (a
            # report of an unknown MessageID takes it exclusively while it correlates and keeps
            # itself), then whether a report is kept for it. VOLATILE: its query takes a fresh
            # snapshot after the lock is granted, so a report committed while the completion
            # waited for it is seen (the statement's own snapshot is older).
            f"""CREATE FUNCTION mm7_early_reports(mid text) RETURNS boolean
                LANGUAGE plpgsql VOLATILE AS $$
                BEGIN
                    IF mid IS NULL THEN
                        RETURN false;
                    END IF;
                    PERFORM pg_advisory_xact_lock_shared({PG_LOCK_CLASS}, hashtext(mid));
                    RETURN EXISTS (SELECT 1 FROM early_reports WHERE mm7_message_id = mid);
                END $$""",
        ),
    ),
    Migration(
        4,
        "SMS fallback: one row per failed recipient, receipts kept until their send commits",
        (
            # the same tables as SQLite's migration 9; retention deletes whole messages and
            # their fallback rows go with them (ON DELETE CASCADE)
            """CREATE TABLE fallback_sms (
                id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                message_id TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
                recipient_id BIGINT NOT NULL,
                address TEXT NOT NULL,
                sms_link TEXT NOT NULL,
                text_max INTEGER NOT NULL,
                trigger TEXT NOT NULL,
                status TEXT NOT NULL,
                sms_id TEXT,
                error TEXT,
                attempts INTEGER NOT NULL DEFAULT 0,
                next_attempt_at BIGINT NOT NULL,
                lease_owner TEXT,
                lease_token TEXT,
                lease_expires_at BIGINT,
                created_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL,
                UNIQUE (message_id, recipient_id)
            )""",
            "CREATE INDEX fallback_sms_due ON fallback_sms(status, next_attempt_at)",
            "CREATE INDEX fallback_sms_receipt ON fallback_sms(sms_link, sms_id)",
            """CREATE TABLE fallback_receipts (
                sms_link TEXT NOT NULL,
                sms_id TEXT NOT NULL,
                status TEXT NOT NULL,
                error TEXT,
                received_at BIGINT NOT NULL,
                PRIMARY KEY (sms_link, sms_id)
            )""",
        ),
    ),
    Migration(
        5,
        "SMS fallback parts: every part of a long text, each settled by its own receipt",
        (
            # the same table as SQLite's migration 10; its parts go with a deleted row
            """CREATE TABLE fallback_parts (
                sms_link TEXT NOT NULL,
                part_id TEXT NOT NULL,
                fallback_id BIGINT NOT NULL REFERENCES fallback_sms(id) ON DELETE CASCADE,
                position INTEGER NOT NULL,
                status TEXT,
                error TEXT,
                PRIMARY KEY (sms_link, part_id)
            )""",
            "CREATE INDEX fallback_parts_row ON fallback_parts(fallback_id)",
            """INSERT INTO fallback_parts (sms_link, part_id, fallback_id, position)
                SELECT sms_link, sms_id, id, 0 FROM fallback_sms WHERE sms_id IS NOT NULL
                ON CONFLICT DO NOTHING""",
        ),
    ),
    Migration(
        6,
        "SMS fallback expiry: the rows submitted longest ago without a final receipt, found fast",
        (
            # the same index as SQLite's migration 11
            "CREATE INDEX fallback_sms_waiting ON fallback_sms(status, updated_at)",
        ),
    ),
)

LATEST = MIGRATIONS[-1].version

_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    "version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at BIGINT NOT NULL)"
)


async def schema_version(conn: asyncpg.Connection) -> int:
    """The version recorded in ``schema_version`` (0 for a new, empty database)."""
    exists = await conn.fetchval("SELECT to_regclass('schema_version') IS NOT NULL")
    if not exists:
        return 0
    version = await conn.fetchval("SELECT MAX(version) FROM schema_version")
    return int(version) if version is not None else 0


async def migrate(
    conn: asyncpg.Connection, now_ms: int, target: int | None = None, where: str = "database"
) -> int:
    """Bring ``conn``'s database up to ``target`` (default ``LATEST``); the version reached.

    Runs in one transaction under ``MIGRATION_LOCK``, so concurrent instances apply each step
    once. ``target`` below ``LATEST`` exists so tests can build an old database and check the
    upgrade. Raises ``SchemaTooNewError`` if the database is newer than this code (``where``
    names the database in the message, never the password of its DSN).
    """
    goal = LATEST if target is None else target
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await conn.execute(_VERSION_TABLE)
        current = await schema_version(conn)
        if current > LATEST:
            raise SchemaTooNewError(
                f"{where}: schema version {current} is newer than this mm7 supports ({LATEST}); "
                "upgrade mm7 or point the store at another database"
            )
        for migration in MIGRATIONS:
            if current < migration.version <= goal:
                for statement in migration.statements:
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO schema_version (version, description, applied_at)"
                    " VALUES ($1, $2, $3)",
                    migration.version,
                    migration.description,
                    now_ms,
                )
                current = migration.version
    return current
