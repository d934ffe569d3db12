"""Durable storage for the gateway: the ``Store`` protocol, its record types and backends.

``Store`` (``base``) is what the API, dispatchers and relay program against; ``SqliteStore``
(``sqlite``) is the embedded default. A PostgreSQL backend can implement the same protocol.
"""

from mm7.service.store.base import (
    Clock,
    DeliveryReportRecord,
    DeliveryReportResult,
    EnqueueResult,
    EventRecord,
    ManualClock,
    MediaBlob,
    MediaPart,
    MessageRecord,
    MessageStatus,
    MoRecord,
    MoResult,
    NewMessage,
    NewMo,
    PartRecord,
    RecipientRecord,
    RecipientStatus,
    SchemaTooNewError,
    Store,
    StoreError,
    StoreStats,
    SystemClock,
    UnknownMediaError,
    WorkItem,
    normalize_address,
)
from mm7.service.store.sqlite import SqliteStore

__all__ = [
    "Clock",
    "DeliveryReportRecord",
    "DeliveryReportResult",
    "EnqueueResult",
    "EventRecord",
    "ManualClock",
    "MediaBlob",
    "MediaPart",
    "MessageRecord",
    "MessageStatus",
    "MoRecord",
    "MoResult",
    "NewMessage",
    "NewMo",
    "PartRecord",
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
