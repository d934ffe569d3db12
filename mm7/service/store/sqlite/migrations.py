"""The SQLite schema as numbered migrations, applied in order when a store opens.

Each migration is a tuple of statements run in one transaction together with the row that
records it in ``schema_version``, so a crash mid-upgrade leaves the previous version intact.
Never edit a released migration: append a new one. A database whose version is above
``LATEST`` was written by a newer mm7 and is refused (``SchemaTooNewError``) rather than
guessed at.

Times are INTEGER milliseconds since the Unix epoch (UTC); JSON columns are TEXT.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from mm7.service.errors import SchemaTooNewError


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step: its version number, what it is for, and its statements."""

    version: int
    description: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "MT path: media, messages, recipients, parts, events, leases",
        (
            # Media by content hash. Small media inline as a BLOB, large media in a file under
            # the media directory (``path`` relative to it): exactly one of the two is set.
            """CREATE TABLE media (
                sha256 TEXT PRIMARY KEY,
                content_type TEXT NOT NULL,
                size INTEGER NOT NULL,
                data BLOB,
                path TEXT,
                created_at INTEGER NOT NULL,
                CHECK ((data IS NULL) <> (path IS NULL))
            )""",
            """CREATE TABLE messages (
                id TEXT PRIMARY KEY,
                idempotency_key TEXT UNIQUE,
                link TEXT NOT NULL,
                fields TEXT NOT NULL,
                status TEXT NOT NULL,
                recipient_count INTEGER NOT NULL,
                queued_count INTEGER NOT NULL,
                submitted_count INTEGER NOT NULL DEFAULT 0,
                created_at INTEGER NOT NULL,
                updated_at INTEGER NOT NULL,
                expires_at INTEGER,
                not_before INTEGER,
                callback_url TEXT
            )""",
            # link and expires_at are copied from the message so that leasing is one indexed
            # scan; address_key is the normalised address that delivery reports match on.
            """CREATE TABLE recipients (
                id INTEGER PRIMARY KEY,
                message_id TEXT NOT NULL REFERENCES messages(id),
                link TEXT NOT NULL,
                address TEXT NOT NULL,
                address_key TEXT NOT NULL,
                status TEXT NOT NULL,
                mm7_message_id TEXT,
                transaction_id TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                next_attempt_at INTEGER NOT NULL,
                expires_at INTEGER,
                last_status_code INTEGER,
                last_status_text TEXT,
                updated_at INTEGER NOT NULL
            )""",
            "CREATE INDEX recipients_due ON recipients(link, status, next_attempt_at)",
            "CREATE INDEX recipients_message ON recipients(message_id)",
            """CREATE INDEX recipients_mm7_id ON recipients(link, mm7_message_id)
                WHERE mm7_message_id IS NOT NULL""",
            """CREATE TABLE message_media (
                message_id TEXT NOT NULL REFERENCES messages(id),
                position INTEGER NOT NULL,
                sha256 TEXT NOT NULL REFERENCES media(sha256),
                content_type TEXT NOT NULL,
                content_id TEXT,
                content_location TEXT,
                PRIMARY KEY (message_id, position)
            ) WITHOUT ROWID""",
            """CREATE TABLE events (
                id INTEGER PRIMARY KEY,
                message_id TEXT NOT NULL,
                recipient_id INTEGER,
                kind TEXT NOT NULL,
                status TEXT,
                details TEXT NOT NULL,
                at INTEGER NOT NULL
            )""",
            "CREATE INDEX events_message ON events(message_id, id)",
            # kind names the queue ('mt' = recipients.id); token fences a taken-over lease.
            """CREATE TABLE leases (
                kind TEXT NOT NULL,
                item_id INTEGER NOT NULL,
                owner TEXT NOT NULL,
                token TEXT NOT NULL,
                expires_at INTEGER NOT NULL,
                PRIMARY KEY (kind, item_id)
            ) WITHOUT ROWID""",
        ),
    ),
    Migration(
        2,
        "Inbound: delivery reports (correlated or kept unknown) and MO messages (issue 7)",
        (
            """CREATE TABLE delivery_reports (
                id INTEGER PRIMARY KEY,
                link TEXT NOT NULL,
                mm7_message_id TEXT NOT NULL,
                recipient TEXT NOT NULL,
                mm_status TEXT NOT NULL,
                raw_status TEXT NOT NULL,
                status_text TEXT,
                raw TEXT,
                message_id TEXT,
                recipient_id INTEGER,
                received_at INTEGER NOT NULL
            )""",
            "CREATE INDEX delivery_reports_message ON delivery_reports(message_id)",
            """CREATE INDEX delivery_reports_unknown ON delivery_reports(id)
                WHERE message_id IS NULL""",
            # MessageID is unique per link (a hard guarantee); TransactionID is checked within
            # a window by the store, because MMSCs recycle small TransactionID counters.
            """CREATE TABLE mo_messages (
                id TEXT PRIMARY KEY,
                link TEXT NOT NULL,
                transaction_id TEXT,
                mm7_message_id TEXT,
                fields TEXT NOT NULL,
                status TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                next_attempt_at INTEGER NOT NULL,
                received_at INTEGER NOT NULL,
                updated_at INTEGER NOT NULL
            )""",
            """CREATE UNIQUE INDEX mo_mm7_id ON mo_messages(link, mm7_message_id)
                WHERE mm7_message_id IS NOT NULL""",
            """CREATE INDEX mo_transaction ON mo_messages(link, transaction_id)
                WHERE transaction_id IS NOT NULL""",
            "CREATE INDEX mo_due ON mo_messages(status, next_attempt_at)",
            """CREATE TABLE mo_media (
                mo_id TEXT NOT NULL REFERENCES mo_messages(id),
                position INTEGER NOT NULL,
                sha256 TEXT NOT NULL REFERENCES media(sha256),
                content_type TEXT NOT NULL,
                content_id TEXT,
                content_location TEXT,
                PRIMARY KEY (mo_id, position)
            ) WITHOUT ROWID""",
        ),
    ),
    Migration(
        3,
        "Relay: the outbox of events for applications' hooks, opt-out suppressions, secrets",
        (
            # One row per event to relay (mo, status, delivery_report, read_reply): written in
            # the same transaction as what it reports, so nothing committed is left unrelayed.
            # hook NULL: resolved at delivery (the message's callback_url signed with its API
            # key, else the link's status hook). event is the JSON body; an MO's media are
            # added at delivery (URLs that expire must be signed then, not at ingest).
            """CREATE TABLE relay_outbox (
                id INTEGER PRIMARY KEY,
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
                next_attempt_at INTEGER NOT NULL,
                first_attempt_at INTEGER,
                last_http_status INTEGER,
                last_error TEXT,
                created_at INTEGER NOT NULL,
                updated_at INTEGER NOT NULL
            )""",
            "CREATE INDEX relay_due ON relay_outbox(status, next_attempt_at, id)",
            "CREATE INDEX relay_hook_due ON relay_outbox(status, hook, next_attempt_at, id)",
            """CREATE INDEX relay_order ON relay_outbox(hook, sender_key, id)
                WHERE status = 'pending'""",
            # Senders who sent a stop word; the sending API refuses them as recipients.
            """CREATE TABLE suppressions (
                address_key TEXT PRIMARY KEY,
                address TEXT NOT NULL,
                word TEXT NOT NULL,
                link TEXT,
                mo_id TEXT,
                created_at INTEGER NOT NULL
            ) WITHOUT ROWID""",
            # Secrets the gateway makes for itself once (the media URL signing key) so that
            # what it signed stays valid across restarts.
            # what a retry of an MO without MessageID repeats and another MO does not (sender,
            # date, subject): with the TransactionID, which MMSCs recycle, it finds retries
            "ALTER TABLE mo_messages ADD COLUMN fingerprint TEXT",
            # retention looks media up by hash to find the ones no message uses any more, and
            # by age without reading the blobs
            "CREATE INDEX message_media_sha ON message_media(sha256)",
            "CREATE INDEX mo_media_sha ON mo_media(sha256)",
            "CREATE INDEX media_created ON media(created_at, sha256)",
            # a STOP finds the sender's queued recipients
            """CREATE INDEX recipients_queued_address ON recipients(address_key)
                WHERE status = 'queued'""",
            """CREATE TABLE store_secrets (
                name TEXT PRIMARY KEY,
                value TEXT NOT NULL,
                created_at INTEGER NOT NULL
            ) WITHOUT ROWID""",
        ),
    ),
    Migration(
        4,
        "Listing messages (GET /v1/messages) and statuses rolled up from the recipients",
        (
            # Per-outcome counters beside queued_count and submitted_count (which counts every
            # recipient ever accepted: those delivered and undelivered are among them), so that
            # the message's status follows its recipients without counting them at each change.
            "ALTER TABLE messages ADD COLUMN delivered_count INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE messages ADD COLUMN undelivered_count INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE messages ADD COLUMN expired_count INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE messages ADD COLUMN suppressed_count INTEGER NOT NULL DEFAULT 0",
            """UPDATE messages SET (delivered_count, undelivered_count, expired_count,
                suppressed_count) = (SELECT COALESCE(SUM(r.status = 'delivered'), 0),
                COALESCE(SUM(r.status = 'undelivered'), 0), COALESCE(SUM(r.status = 'expired'), 0),
                COALESCE(SUM(r.status = 'suppressed'), 0)
                FROM recipients r WHERE r.message_id = messages.id)""",
            # the rules of mm7.service.store.records as of this version, for the messages
            # finished before it (those still queued get them at their next change)
            """UPDATE messages SET status = CASE
                WHEN submitted_count - delivered_count - undelivered_count > 0 THEN 'submitted'
                WHEN recipient_count - suppressed_count <= 0 THEN 'failed'
                WHEN delivered_count >= recipient_count - suppressed_count THEN 'delivered'
                WHEN delivered_count > 0 THEN 'partially_delivered'
                WHEN expired_count >= recipient_count - suppressed_count THEN 'expired'
                ELSE 'failed' END
                WHERE queued_count <= 0""",
            # the API key that sent the message (GET /v1/messages lists only its own)
            """ALTER TABLE messages ADD COLUMN api_key TEXT
                GENERATED ALWAYS AS (json_extract(fields, '$.api_key')) VIRTUAL""",
            "CREATE INDEX messages_listed ON messages(api_key, created_at, id)",
            "CREATE INDEX messages_listed_status ON messages(api_key, status, created_at, id)",
            "CREATE INDEX messages_listed_link ON messages(api_key, link, created_at, id)",
            # to=: the messages of one handset
            "CREATE INDEX recipients_address ON recipients(address_key, message_id)",
        ),
    ),
    Migration(
        5,
        "API key roles and idempotency: a sending key's relay events, the request digest",
        (
            # the SHA-256 of the request a message was created from: a reused idempotency key
            # with another request is refused (NULL: not compared, e.g. rows from before)
            "ALTER TABLE messages ADD COLUMN request_digest TEXT",
            # a sending key lists and counts only its own relay events
            "CREATE INDEX relay_api_key ON relay_outbox(api_key, id)",
        ),
    ),
    Migration(
        6,
        "The cluster: named leases (link, relay, retention ownership), inbound request keys",
        (
            # One holder at a time per name ("link:<name>", "relay", "retention"); token grows
            # by one each time the lease changes hands. ("leases" holds the work items' leases.)
            """CREATE TABLE named_leases (
                name TEXT PRIMARY KEY,
                owner TEXT NOT NULL,
                token INTEGER NOT NULL,
                expires_at INTEGER NOT NULL
            ) WITHOUT ROWID""",
            # the inbound endpoint's duplicate detection, shared by every process on the store
            """CREATE TABLE seen_requests (
                key TEXT PRIMARY KEY,
                expires_at INTEGER NOT NULL
            ) WITHOUT ROWID""",
            "CREATE INDEX seen_requests_expiry ON seen_requests(expires_at)",
        ),
    ),
    Migration(
        7,
        "API key quotas: recipients counted per UTC day, the per-second buckets",
        (
            # recipients each key sent per UTC day ("YYYY-MM-DD"): max_per_day
            """CREATE TABLE api_day_counts (
                api_key TEXT NOT NULL,
                day TEXT NOT NULL,
                used INTEGER NOT NULL,
                PRIMARY KEY (api_key, day)
            ) WITHOUT ROWID""",
            # each key's max_per_second bucket: its tokens at stamp (ms)
            """CREATE TABLE api_rate_buckets (
                api_key TEXT PRIMARY KEY,
                tokens REAL NOT NULL,
                stamp INTEGER NOT NULL
            ) WITHOUT ROWID""",
        ),
    ),
    Migration(
        8,
        "Early reports: reports and read replies kept until their MessageID is recorded",
        (
            # mm7.service.store.early: what correlating them later needs (links: the peer's
            # first, other_links a JSON array); a row leaves when its report is applied.
            # report_id: the delivery_reports row of a report (NULL for a read reply).
            """CREATE TABLE early_reports (
                id INTEGER PRIMARY KEY,
                kind TEXT NOT NULL,
                report_id INTEGER,
                link TEXT NOT NULL,
                other_links TEXT NOT NULL,
                mm7_message_id TEXT NOT NULL,
                recipient TEXT NOT NULL,
                alternate TEXT,
                status TEXT NOT NULL,
                status_text TEXT,
                details TEXT NOT NULL,
                received_at INTEGER NOT NULL
            )""",
            # every completion probes it (one index lookup, nothing found almost always)
            "CREATE INDEX early_reports_message ON early_reports(mm7_message_id)",
            "CREATE INDEX early_reports_received ON early_reports(received_at)",
        ),
    ),
    Migration(
        9,
        "SMS fallback: one row per failed recipient, receipts kept until their send commits",
        (
            # mm7.service.fallback: queued in the transaction that fails the recipient; unique
            # per (message, recipient), so it can never be queued twice. status: queued,
            # sending (committed before the send), submitted (sms_id set), delivered, failed.
            # trigger: "failed" or "report:<MMStatus>". The lease columns fence the worker.
            """CREATE TABLE fallback_sms (
                id INTEGER PRIMARY KEY,
                message_id TEXT NOT NULL REFERENCES messages(id),
                recipient_id INTEGER NOT NULL,
                address TEXT NOT NULL,
                sms_link TEXT NOT NULL,
                text_max INTEGER NOT NULL,
                trigger TEXT NOT NULL,
                status TEXT NOT NULL,
                sms_id TEXT,
                error TEXT,
                attempts INTEGER NOT NULL DEFAULT 0,
                next_attempt_at INTEGER NOT NULL,
                lease_owner TEXT,
                lease_token TEXT,
                lease_expires_at INTEGER,
                created_at INTEGER NOT NULL,
                updated_at INTEGER NOT NULL,
                UNIQUE (message_id, recipient_id)
            )""",
            "CREATE INDEX fallback_sms_due ON fallback_sms(status, next_attempt_at)",
            # receipts are correlated here, so they survive a restart of the SMS link
            "CREATE INDEX fallback_sms_receipt ON fallback_sms(sms_link, sms_id)",
            # retention deletes whole messages; their fallback rows go with them
            """CREATE TRIGGER fallback_sms_purge AFTER DELETE ON messages BEGIN
                DELETE FROM fallback_sms WHERE message_id = OLD.id;
            END""",
            # a receipt that arrived before its send's ``submitted`` commit (applied by it)
            """CREATE TABLE fallback_receipts (
                sms_link TEXT NOT NULL,
                sms_id TEXT NOT NULL,
                status TEXT NOT NULL,
                error TEXT,
                received_at INTEGER NOT NULL,
                PRIMARY KEY (sms_link, sms_id)
            ) WITHOUT ROWID""",
        ),
    ),
    Migration(
        10,
        "SMS fallback parts: every part of a long text, each settled by its own receipt",
        (
            # mm7.service.fallback: one row per part the SMS link sent (part 0's id is the
            # row's sms_id); receipts are correlated here by (SMS link, part id), and the row
            # settles once every part has its receipt (delivered), or at the first failed one.
            # status: NULL until the part's receipt came, then delivered or failed.
            """CREATE TABLE fallback_parts (
                sms_link TEXT NOT NULL,
                part_id TEXT NOT NULL,
                fallback_id INTEGER NOT NULL REFERENCES fallback_sms(id),
                position INTEGER NOT NULL,
                status TEXT,
                error TEXT,
                PRIMARY KEY (sms_link, part_id)
            ) WITHOUT ROWID""",
            "CREATE INDEX fallback_parts_row ON fallback_parts(fallback_id)",
            # a row sent before this version: its one known id becomes its only part
            """INSERT OR IGNORE INTO fallback_parts (sms_link, part_id, fallback_id, position)
                SELECT sms_link, sms_id, id, 0 FROM fallback_sms WHERE sms_id IS NOT NULL""",
            # retention deletes a message's fallback rows (fallback_sms_purge); their parts too
            """CREATE TRIGGER fallback_parts_purge AFTER DELETE ON fallback_sms BEGIN
                DELETE FROM fallback_parts WHERE fallback_id = OLD.id;
            END""",
        ),
    ),
    Migration(
        11,
        "SMS fallback expiry: the rows submitted longest ago without a final receipt, found fast",
        (
            # mm7.service.fallback: the worker expires rows still submitted receipt_timeout
            # after their submitted commit (updated_at), at every poll: a range of this index,
            # not a scan of every row waiting for receipts (an SMS link without receipts keeps
            # them all there until then). status gains "expired" (status has no CHECK).
            "CREATE INDEX fallback_sms_waiting ON fallback_sms(status, updated_at)",
        ),
    ),
)

LATEST = MIGRATIONS[-1].version


def schema_version(conn: sqlite3.Connection) -> int:
    """The version recorded in ``schema_version`` (0 for a new, empty database)."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_version ("
        "version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at INTEGER NOT NULL)"
    )
    row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    return int(row[0]) if row is not None and row[0] is not None else 0


def migrate(
    conn: sqlite3.Connection, now_ms: int, target: int | None = None, where: str = "database"
) -> int:
    """Bring ``conn``'s schema up to ``target`` (default ``LATEST``); return the version reached.

    ``conn`` must be in autocommit mode (``isolation_level=None``). ``target`` below ``LATEST``
    exists so tests can build an old database and check the upgrade. Raises
    ``SchemaTooNewError`` if the database is newer than this code.
    """
    goal = LATEST if target is None else target
    current = schema_version(conn)
    if current > LATEST:
        raise SchemaTooNewError(
            f"{where}: schema version {current} is newer than this mm7 supports ({LATEST}); "
            "upgrade mm7 or point the store at another database"
        )
    for migration in MIGRATIONS:
        if current < migration.version <= goal:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in migration.statements:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_version (version, description, applied_at) VALUES (?,?,?)",
                    (migration.version, migration.description, now_ms),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            current = migration.version
    return current
