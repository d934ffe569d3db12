"""Durable storage for the gateway: the ``Store`` protocol, its records and its backends.

- ``base``: the ``Store`` protocol (what the API, dispatchers, inbound endpoint and relay need),
  its errors and the injectable ``Clock``;
- ``records``: the immutable records that cross it (messages, recipients, media, MOs, reports);
- ``outbox``: the relay's records (hook events, opt-outs, suppressions), written by the store in
  the same transaction as what they report;
- ``sqlite/``: the embedded backend (``SqliteStore``). Each backend lives in its own folder and
  imports the protocol, never the other way round;
- ``migrate_copy/``: ``mm7 store copy``, an SQLite store into an empty PostgreSQL database.
"""

from mm7.service.errors import AllSuppressedError, SchemaTooNewError, StoreError, UnknownMediaError
from mm7.service.store.base import Clock, ManualClock, Store, SystemClock
from mm7.service.store.outbox import (
    MoRelay,
    OptOut,
    RelayItem,
    RelayKind,
    RelayRecord,
    RelayStatus,
    Suppression,
)
from mm7.service.store.records import (
    DeliveryReportRecord,
    DeliveryReportResult,
    EnqueueResult,
    EventRecord,
    MediaBlob,
    MediaPart,
    MessageContent,
    MessageCursor,
    MessageFilter,
    MessagePage,
    MessageRecord,
    MessageStatus,
    MessageSummary,
    MoRecord,
    MoResult,
    NewMessage,
    NewMo,
    PartRecord,
    PurgeStats,
    RecipientCounts,
    RecipientRecord,
    RecipientStatus,
    StoreStats,
    WorkItem,
    normalize_address,
)
from mm7.service.store.sqlite import SqliteStore

__all__ = [
    "AllSuppressedError",
    "MoRelay",
    "OptOut",
    "RelayItem",
    "RelayKind",
    "RelayRecord",
    "RelayStatus",
    "Suppression",
    "Clock",
    "DeliveryReportRecord",
    "DeliveryReportResult",
    "EnqueueResult",
    "EventRecord",
    "ManualClock",
    "MediaBlob",
    "MediaPart",
    "MessageCursor",
    "MessageFilter",
    "MessagePage",
    "MessageContent",
    "MessageRecord",
    "MessageStatus",
    "MessageSummary",
    "RecipientCounts",
    "MoRecord",
    "MoResult",
    "NewMessage",
    "NewMo",
    "PartRecord",
    "PurgeStats",
    "RecipientRecord",
    "RecipientStatus",
    "SchemaTooNewError",
    "SqliteStore",
    "Store",
    "StoreError",
    "StoreStats",
    "SystemClock",
    "UnknownMediaError",
    "WorkItem",
    "normalize_address",
]
