"""The gateway's configuration: gateway.toml read, checked and turned into typed settings.

- ``loader``: ``load_config(path)``: reads the TOML, refuses unknown keys and bad values with
  one ``ConfigError`` line naming the file and the key path, and builds the settings (every key
  is in ``conf/gateway.toml``, commented where it is not set; each default is declared once, on
  its field in ``settings``);
- ``settings``: the frozen dataclasses it returns (``GatewayConfig`` and one per table);
- ``reader``: the typed accessors the loader reads tables with (``Table``, ``Context``) and
  ``ConfigError``.
"""

from mm7.service.config.loader import load_config
from mm7.service.config.settings import (
    ApiKey,
    ApiSettings,
    FetchSettings,
    GatewayConfig,
    InboundSettings,
    InboundTLS,
    LinkSettings,
    Listen,
    LoggingSettings,
    MetricsSettings,
    PeerSettings,
    RelayHook,
    RelayRoute,
    RelaySettings,
    RetrySettings,
    RouteMatch,
    StoreSettings,
)
from mm7.service.errors import ConfigError

__all__ = [
    "ApiKey",
    "ApiSettings",
    "ConfigError",
    "FetchSettings",
    "GatewayConfig",
    "InboundSettings",
    "InboundTLS",
    "LinkSettings",
    "Listen",
    "LoggingSettings",
    "MetricsSettings",
    "PeerSettings",
    "RelayHook",
    "RelayRoute",
    "RelaySettings",
    "RetrySettings",
    "RouteMatch",
    "StoreSettings",
    "load_config",
]
