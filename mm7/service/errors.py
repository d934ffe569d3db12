"""The gateway service's errors, one tree: every one is an ``MM7Error`` (``mm7.core.errors``), so
``except MM7Error`` catches a store failure as well as a codec one.

- ``ServiceError``: the base of this layer's own errors;
- ``ConfigError``: gateway.toml cannot be used (names the file and the key path);
- ``StoreError`` (``SchemaTooNewError``, ``UnknownMediaError``): a store refused on purpose;
  ``StoreCopyError`` (``StoreCopyRefusedError``): ``mm7 store copy`` failed (refused), nothing
  written;
- ``AllSuppressedError``: every recipient of a message opted out, nothing was written;
- ``IdempotencyConflictError``: an idempotency key reused with another request, nothing written;
- ``ApiError``: a request the API refuses, with the HTTP status and the field at fault;
- ``FetchError``: a media URL could not be fetched or was refused;
- ``BuildError``: a stored message cannot become a SubmitReq (a permanent MT failure).

The modules that raise them re-export them where they were defined before (``store.base``,
``api.validate`` ...), so existing imports keep working.
"""

from __future__ import annotations

from mm7.core.errors import MM7Error

__all__ = [
    "AllSuppressedError",
    "ApiError",
    "BuildError",
    "ConfigError",
    "FetchError",
    "IdempotencyConflictError",
    "SchemaTooNewError",
    "ServiceError",
    "StoreCopyError",
    "StoreCopyRefusedError",
    "StoreError",
    "StoreUnavailableError",
    "UnknownMediaError",
]


class ServiceError(MM7Error):
    """Base class of the gateway service's errors."""


class ConfigError(ServiceError, ValueError):
    """A configuration that cannot be used; the message names the file and the key path."""


class StoreError(ServiceError):
    """Base class of the errors a store raises on purpose."""


class SchemaTooNewError(StoreError):
    """The database was written by a newer mm7 (its schema version is above this code's)."""


class StoreCopyError(StoreError):
    """Copying a store into another failed (unreadable source, a media file missing, the target
    unreachable): the copy was rolled back, the target is as it was; the message says why."""


class StoreCopyRefusedError(StoreCopyError):
    """A copy refused before writing anything, for what the databases hold: a source not at the
    schema version this mm7 copies, a target newer than this mm7 or not empty."""


class StoreUnavailableError(StoreError):
    """The store cannot commit or cannot write media right now (disk full, read-only, locked):
    nothing was written, and the same request may succeed once the disk recovers. The message
    says why without naming paths; the original error is the ``__cause__``."""


class UnknownMediaError(StoreError):
    """A message part refers by hash to media that was never stored."""


class AllSuppressedError(ServiceError):
    """Every recipient of a message opted out: nothing was written."""

    def __init__(self, addresses: tuple[str, ...]) -> None:
        super().__init__(f"every recipient opted out: {', '.join(addresses)}")
        self.addresses = addresses


class IdempotencyConflictError(ServiceError):
    """An idempotency key already names a message created from another request: nothing was
    written (``message_id`` is the message the key names)."""

    def __init__(self, message_id: str) -> None:
        super().__init__(
            f"the idempotency key names message {message_id}, sent with another request"
        )
        self.message_id = message_id


class ApiError(ServiceError):
    """A request the API refuses: HTTP ``status``, the ``field`` at fault (None: the request as a
    whole) and a ``message`` saying why."""

    def __init__(
        self,
        status: int,
        field: str | None,
        message: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.status = status
        self.field = field
        self.message = message
        #: extra response headers (Retry-After on 503)
        self.headers = dict(headers or {})


class FetchError(ServiceError):
    """A media URL could not be fetched, or was refused; the message says why."""


class BuildError(ServiceError):
    """The stored message cannot be turned into a SubmitReq (a permanent failure)."""
