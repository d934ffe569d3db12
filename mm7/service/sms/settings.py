"""Settings of one SMS link, as ``[[sms_links]]`` entries describe them (declared with the rest
of the configuration, in ``mm7.service.config.settings``)."""

from mm7.service.config.settings import HttpSmsSettings, SmppSettings, SmsLinkSettings

__all__ = ["HttpSmsSettings", "SmppSettings", "SmsLinkSettings"]
