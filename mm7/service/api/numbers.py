"""Recipients as a carrier will take them: numbers checked with libphonenumber and written in
E.164, short codes and e-mail addresses as MM7 carries them.

``normalise_recipient(address, where, rules)`` takes one address already read by
``validate.check_address`` (punctuation and ``tel:`` removed) and returns what is stored and
submitted, or raises a 422 ``ApiError`` naming ``where`` and saying why:

* ``+`` and digits: an E.164 number. It must have a length the country's numbers can have
  (libphonenumber's "possible") and, with ``check = "valid"`` (the default), lie in a range
  libphonenumber knows as assigned. Written back as ``+<country code><number>``.
* digits without ``+``: 3 to 8 digits (not starting with ``00``) are a short code (MM7's
  ``ShortCode``; ``Address.guess`` writes up to six digits as one, longer ones as a
  ``Number``), kept as given, unless the region has a valid national number of those digits.
  Anything else is a national number ("2015550123", "015112345678", "01149..." with the
  region's international prefix), read in ``rules.region`` and written in E.164; without a
  region it is refused, since it could be any country's.
* an address with ``@``: an e-mail address (RFC2822Address), kept as given.

The ``+`` of the stored form is written or dropped on the wire as the link's dialect says
(``number_plus``).

``check_sender(address, where, check)`` checks a ``from`` the same way where the rules fit a
sender, and keeps it as given (the per-sender limits key senders by their spelling): a number
with ``+`` is E.164, possible and, with ``check = "valid"``, valid; digits without ``+`` are a
short code (3 to 8 digits) or a number as the carrier writes it (no region is assumed:
``12025550100``, Mbuni's ``0012345``), at most 15 digits after an optional ``00``; an e-mail
address passes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NoReturn

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumber, ValidationResult

from mm7.service.config.settings import ApiKey, GatewayConfig, NumberCheck
from mm7.service.errors import ApiError

__all__ = [
    "SHORT_CODE_DIGITS",
    "NumberRules",
    "check_sender",
    "normalise_recipient",
    "normalise_recipients",
    "region_for",
]

#: how many digits a short code has (national short codes run from 3 digits to 8)
SHORT_CODE_DIGITS = (3, 8)
#: more digits than this is no number in any form (15 for E.164, plus an international prefix)
_MAX_DIGITS = 18

_PARSE_ERRORS = {
    NumberParseException.INVALID_COUNTRY_CODE: "no country has this calling code",
    NumberParseException.NOT_A_NUMBER: "not a phone number",
    NumberParseException.TOO_SHORT_AFTER_IDD: "too short after the international prefix",
    NumberParseException.TOO_SHORT_NSN: "too short",
    NumberParseException.TOO_LONG: "too long",
}
_LENGTH_ERRORS = {
    ValidationResult.TOO_SHORT: ("too short", ""),
    ValidationResult.TOO_LONG: ("too long", ""),
    ValidationResult.INVALID_LENGTH: ("not a possible length", ""),
    ValidationResult.IS_POSSIBLE_LOCAL_ONLY: (
        "too short",
        " (a local number without its area code)",
    ),
}


@dataclass(frozen=True, slots=True)
class NumberRules:
    """How one recipient is read: the region its national form belongs to, and how strict."""

    #: ISO 3166-1 alpha-2 code national numbers are read in; None: only E.164 is accepted
    region: str | None = None
    #: "valid": a range libphonenumber knows as assigned; "possible": a possible length
    check: NumberCheck = "valid"


def _refused(where: str, address: str, why: str) -> NoReturn:
    raise ApiError(422, where, f"{address!r}: {why}")


def _country(number: PhoneNumber) -> str:
    region = phonenumbers.region_code_for_country_code(number.country_code or 0)
    if region in (phonenumbers.UNKNOWN_REGION, phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY):
        return f"+{number.country_code}"
    return f"region {region}"


def _is_short_code(digits: str, rules: NumberRules) -> bool:
    low, high = SHORT_CODE_DIGITS
    if not low <= len(digits) <= high or digits.startswith("00"):
        return False  # "00" starts an international number in most regions
    if rules.region is None:
        return True
    # a valid national number of the region wins over a short code of the same digits
    try:
        national = phonenumbers.parse(digits, rules.region)
    except NumberParseException:
        return True
    return not phonenumbers.is_valid_number(national)


def normalise_recipient(address: str, where: str, rules: NumberRules) -> str:
    """``address`` (as ``check_address`` returned it) as it is stored and submitted, or a 422
    ApiError naming ``where`` (module docstring for the rules)."""
    if "@" in address:
        return address
    digits = address.removeprefix("+")
    if len(digits) > _MAX_DIGITS:
        _refused(where, address, f"too long ({len(digits)} digits; E.164 allows 15)")
    if not address.startswith("+"):
        if _is_short_code(digits, rules):
            return address
        if len(digits) < SHORT_CODE_DIGITS[0]:
            _refused(where, address, "too short (a short code has 3 to 8 digits, a number more)")
        if rules.region is None:
            _refused(
                where,
                address,
                "a national number (no leading '+') needs a region to be read in: write it in "
                "E.164 (+ and the country code), or set default_region on the API key or the "
                "link",
            )
    try:
        number = phonenumbers.parse(address, None if address.startswith("+") else rules.region)
    except NumberParseException as exc:
        why = _PARSE_ERRORS.get(exc.error_type, "not a phone number")
        _refused(where, address, why)
    reason = phonenumbers.is_possible_number_with_reason(number)
    if reason == ValidationResult.INVALID_COUNTRY_CODE:
        _refused(where, address, f"no country has calling code +{number.country_code}")
    if reason != ValidationResult.IS_POSSIBLE:
        why, note = _LENGTH_ERRORS.get(reason, ("not a possible number", ""))
        _refused(where, address, f"{why} for {_country(number)}{note}")
    if rules.check == "valid" and not phonenumbers.is_valid_number(number):
        _refused(
            where,
            address,
            f"not a valid number for {_country(number)} (no range libphonenumber knows as "
            'assigned; number_check = "possible" accepts numbers of a possible length)',
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def check_sender(address: str, where: str, check: NumberCheck) -> None:
    """A 422 ApiError naming ``where`` for a sender (``address`` as ``check_address`` returned
    it) the carrier would refuse (module docstring); the sender is kept as given."""
    if "@" in address:
        return
    if address.startswith("+"):
        normalise_recipient(address, where, NumberRules(None, check))
        return
    if len(address) < SHORT_CODE_DIGITS[0]:
        _refused(where, address, "too short (a short code has 3 to 8 digits, a number more)")
    national = address.removeprefix("00")
    if len(national) > 15:
        _refused(where, address, f"too long ({len(national)} digits; E.164 allows 15)")


def region_for(config: GatewayConfig, key: ApiKey, link: str | None, address: str) -> str | None:
    """The region a national ``address`` is read in, one rule for intake and the listing's
    ``to``: the key's ``default_region``, else that of the link named (``link``: the message's,
    or the listing's filter; None when it names no configured link), else that of the link
    ``address`` routes to (its prefix, else the default link); None: E.164 only."""
    if key.default_region is not None:
        return key.default_region
    if link is not None:
        return config.link(link).default_region if link in config.link_names else None
    settings = config.route(address)
    return settings.default_region if settings is not None else None


def normalise_recipients(
    addresses: Sequence[str], fields: Sequence[str], rules_for: Callable[[str], NumberRules]
) -> list[str]:
    """Every address normalised (``fields[i]`` names ``addresses[i]`` in errors), refusing one
    that is another's number spelled differently ("2015550123" and "+12015550123")."""
    out: list[str] = []
    seen: dict[str, str] = {}
    for address, where in zip(addresses, fields, strict=True):
        normal = normalise_recipient(address, where, rules_for(address))
        key = normal.lower()
        if key in seen:
            raise ApiError(422, where, f"repeats {seen[key]} ({normal})")
        seen[key] = where
        out.append(normal)
    return out
