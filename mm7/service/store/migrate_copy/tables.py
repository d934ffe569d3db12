"""What ``mm7 store copy`` moves: each PostgreSQL table, the columns it fills, where they come from.

The tables are listed in the order they are filled, so that every foreign key finds its row
(media before the parts that use it, messages before their recipients). Columns have the same
names on both sides (``postgres/migrations.py`` mirrors the SQLite schema at its latest
version) except:

- ``media.data``: the BLOB, or the bytes of the file ``media.path`` names under the media
  directory (``source.py`` reads it); PostgreSQL keeps every medium in the row;
- ``lease_owner``, ``lease_token``, ``lease_expires_at`` of ``recipients`` and ``relay_outbox``:
  SQLite keeps a work item's lease in ``leases`` (``kind`` 'mt' or 'relay', ``item_id``), the
  PostgreSQL schema on the row itself. A lease held at the snapshot keeps its owner, fencing
  token and expiry, so an outcome presented with that token still applies, and after the expiry
  any instance takes the item over as from a dead worker.

Not copied: ``schema_version`` (the target's own), and the PostgreSQL tables SQLite has no rows
for: the cluster's named leases and the inbound request keys (``leases``, ``seen_requests``),
which belong to the instances of one run, and the API keys' per-second buckets
(``api_rate_buckets``: a second's worth, refilled by then). The per-day counts are copied, so a
key's day quota holds across the move. ``store_secrets`` are copied over the target's own
(``target.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from mm7.service.store.sqlite.relay import LEASE_KIND_RELAY

#: the kind of an MT recipient's lease in SQLite's ``leases`` (``sqlite/store.py``)
LEASE_KIND_MT = "mt"

#: the lease columns of a PostgreSQL work row, and the ``leases`` column each is read from
_LEASE_SOURCE = {
    "lease_owner": "l.owner",
    "lease_token": "l.token",
    "lease_expires_at": "l.expires_at",
}


@dataclass(frozen=True, slots=True)
class TablePlan:
    """One table's copy: the PostgreSQL columns its rows fill, read from the SQLite table of
    the same name (ordered by ``key``), with the item leases of ``lease_kind`` joined in."""

    table: str
    columns: tuple[str, ...]
    key: tuple[str, ...]
    #: an identity ``id``: its sequence is set past the copied ids afterwards
    identity: bool = False
    lease_kind: str | None = None

    @property
    def select(self) -> str:
        """The SQLite query whose rows are this table's, in ``columns`` order."""
        leased = self.lease_kind is not None
        exprs = [
            _LEASE_SOURCE[c] if leased and c in _LEASE_SOURCE else f"t.{c}" for c in self.columns
        ]
        join = (
            f" LEFT JOIN leases l ON l.kind = '{self.lease_kind}' AND l.item_id = t.id"
            if leased
            else ""
        )
        order = ", ".join(f"t.{c}" for c in self.key)
        return f"SELECT {', '.join(exprs)} FROM {self.table} t{join} ORDER BY {order}"


_LEASE = tuple(_LEASE_SOURCE)
_PART = ("position", "sha256", "content_type", "content_id", "content_location")

MEDIA = TablePlan("media", ("sha256", "content_type", "size", "data", "created_at"), ("sha256",))

#: every table copied, in the order they are filled (``MEDIA`` first, read by ``source.py``)
PLANS: tuple[TablePlan, ...] = (
    MEDIA,
    TablePlan(
        "messages",
        (
            "id", "idempotency_key", "request_digest", "link", "api_key", "fields", "status",
            "recipient_count", "queued_count", "submitted_count", "delivered_count",
            "undelivered_count", "expired_count", "suppressed_count", "created_at",
            "updated_at", "expires_at", "not_before", "callback_url",
        ),
        ("id",),
    ),
    TablePlan(
        "recipients",
        (
            "id", "message_id", "link", "address", "address_key", "status", "mm7_message_id",
            "transaction_id", "attempts", "next_attempt_at", "expires_at", "last_status_code",
            "last_status_text", "updated_at", *_LEASE,
        ),
        ("id",),
        identity=True,
        lease_kind=LEASE_KIND_MT,
    ),
    TablePlan("message_media", ("message_id", *_PART), ("message_id", "position")),
    TablePlan(
        "events",
        ("id", "message_id", "recipient_id", "kind", "status", "details", "at"),
        ("id",),
        identity=True,
    ),
    TablePlan(
        "delivery_reports",
        (
            "id", "link", "mm7_message_id", "recipient", "mm_status", "raw_status",
            "status_text", "raw", "message_id", "recipient_id", "received_at",
        ),
        ("id",),
        identity=True,
    ),
    TablePlan(
        "early_reports",
        (
            "id", "kind", "report_id", "link", "other_links", "mm7_message_id", "recipient",
            "alternate", "status", "status_text", "details", "received_at",
        ),
        ("id",),
        identity=True,
    ),
    TablePlan(
        "mo_messages",
        (
            "id", "link", "transaction_id", "mm7_message_id", "fingerprint", "fields", "status",
            "attempts", "next_attempt_at", "received_at", "updated_at",
        ),
        ("id",),
    ),
    TablePlan("mo_media", ("mo_id", *_PART), ("mo_id", "position")),
    TablePlan(
        "relay_outbox",
        (
            "id", "kind", "idempotency_key", "hook", "callback_url", "api_key", "link",
            "sender_key", "source_id", "media", "event", "status", "attempts",
            "next_attempt_at", "first_attempt_at", "last_http_status", "last_error",
            "created_at", "updated_at", *_LEASE,
        ),
        ("id",),
        identity=True,
        lease_kind=LEASE_KIND_RELAY,
    ),
    TablePlan(
        "suppressions",
        ("address_key", "address", "word", "link", "mo_id", "created_at"),
        ("address_key",),
    ),
    TablePlan("api_day_counts", ("api_key", "day", "used"), ("api_key", "day")),
    # the SMS fallback keeps its lease on its own row in both schemas
    TablePlan(
        "fallback_sms",
        (
            "id", "message_id", "recipient_id", "address", "sms_link", "text_max", "trigger",
            "status", "sms_id", "error", "attempts", "next_attempt_at", "lease_owner",
            "lease_token", "lease_expires_at", "created_at", "updated_at",
        ),
        ("id",),
        identity=True,
    ),
    TablePlan(
        "fallback_parts",
        ("sms_link", "part_id", "fallback_id", "position", "status", "error"),
        ("sms_link", "part_id"),
    ),
    TablePlan(
        "fallback_receipts",
        ("sms_link", "sms_id", "status", "error", "received_at"),
        ("sms_link", "sms_id"),
    ),
)  # fmt: skip

#: the store's own secrets: copied last, over those the target made for itself
SECRETS = TablePlan("store_secrets", ("name", "value", "created_at"), ("name",))

#: PostgreSQL tables left as they are (the target's own, or per run of its instances)
NOT_COPIED = ("schema_version", "leases", "seen_requests", "api_rate_buckets")
#: SQLite tables not read: its schema version, its work-item leases (read into the rows'
#: lease columns), the cluster's named leases and request keys (per run, as above) and the
#: per-second buckets
SQLITE_NOT_COPIED = (
    "schema_version",
    "leases",
    "named_leases",
    "seen_requests",
    "api_rate_buckets",
)
