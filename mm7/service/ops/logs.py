"""The gateway's logging: ``mm7.transport.logs`` (shared with the simulator), under the name the
service has always imported it by."""

from mm7.transport.logs import (
    REDACTED,
    SECRET_KEY_WORDS,
    configure_logging,
    is_secret_key,
    redact,
    redact_secrets,
    unconfigure_logging,
)

__all__ = [
    "REDACTED",
    "SECRET_KEY_WORDS",
    "configure_logging",
    "is_secret_key",
    "redact",
    "redact_secrets",
    "unconfigure_logging",
]
