"""SMS links: the SMS-sending component of the upcoming SMS fallback (issue 18), over SMPP 3.4
or a Kannel-style HTTP gateway, behind one ``SmsLink`` protocol."""

from mm7.service.sms.encoding import Coding, SmsPart, split_text
from mm7.service.sms.link import (
    Receipt,
    ReceiptHandler,
    ReceiptState,
    SentSms,
    SmsLink,
    SmsPartlySent,
    SmsRejected,
    SmsUnavailable,
)
from mm7.service.sms.receipt import parse_receipt
from mm7.service.sms.settings import HttpSmsSettings, SmppSettings

__all__ = [
    "Coding",
    "HttpSmsSettings",
    "Receipt",
    "ReceiptHandler",
    "ReceiptState",
    "SentSms",
    "SmppSettings",
    "SmsLink",
    "SmsPart",
    "SmsPartlySent",
    "SmsRejected",
    "SmsUnavailable",
    "parse_receipt",
    "split_text",
]
