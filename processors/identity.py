"""Identifier normalisation: one person, one spelling of each identifier.

Rules (documented in docs/architecture.md):
- phone numbers: parsed with Belgium as the default region and written in E.164
  (`0471 12 34 56`, `+32 471 12 34 56` and `0032471123456` are all `+32471123456`); a
  landline with its zone prefix (`071 12 34 56`) and a foreign number in international form
  (`+33 6 12 34 56 78`) are kept as numbers of their own country; anything that does not
  parse, or parses to a number that cannot exist, is refused.
- e-mail addresses: trimmed and case-folded whole (providers treat the local part
  case-insensitively in practice), one `@`, a dotted domain, no spaces.
- social handles: qualified by platform, `platform:handle`, lower-cased, leading `@` dropped;
  the platform is one the contracts know (`SOCIAL_PLATFORMS`, the `SocialPlatform` enum).
- the controller's customer reference: as given, only surrounding spaces removed.

Errors never contain the identifier itself: they may end up in logs and dead letters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

import phonenumbers

DEFAULT_REGION = "BE"
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]{2,}$")
_HANDLE = re.compile(r"^[\w.\-]{1,100}$")
_MAX_IDENTIFIER = 320
# the symbols of schemas/avro/common/SocialPlatform.avsc (a unit test keeps them equal)
SOCIAL_PLATFORMS = frozenset({"facebook", "instagram", "x", "linkedin", "tiktok", "youtube",
                              "other"})  # fmt: skip


class IdentifierKind(StrEnum):
    PHONE = "phone"
    EMAIL = "email"
    SOCIAL_HANDLE = "social_handle"
    CUSTOMER_REF = "customer_ref"
    CONTACT = "contact"  # stands for the subject of an event that names nobody


class InvalidIdentifier(ValueError):
    """An identifier that cannot be normalised; the message names the kind, not the value."""

    def __init__(self, kind: IdentifierKind, problem: str) -> None:
        super().__init__(f"invalid {kind.value}: {problem}")
        self.kind = kind
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Identifier:
    """A normalised identifier; `value` is personal data and must stay out of telemetry."""

    kind: IdentifierKind
    value: str


def normalise_phone(raw: str, default_region: str = DEFAULT_REGION) -> Identifier:
    """E.164 form of a phone number, Belgian unless it carries a country code."""
    text = raw.strip()
    if default_region == "BE" and _BE_MOBILE is not None and len(text) <= _MAX_PHONE:
        match = _BE_MOBILE.fullmatch(text.replace(" ", ""))
        if match is not None:  # what phonenumbers gives, without parsing (see _BE_MOBILE)
            return Identifier(IdentifierKind.PHONE, "+32" + match.group(1))
    return Identifier(IdentifierKind.PHONE, _e164(text, default_region))


def _be_mobile_shortcut() -> re.Pattern[str] | None:
    """Belgian mobile numbers as written in Belgium or in E.164, for a fast path.

    phonenumbers parses `+32 4xx xx xx xx`, `0032 4xx...` and `04xx...` (any spaces) with
    region BE to national number `4xx...`: a plus and the country code, BE's international
    prefix 00 then the country code, or BE's national prefix 0. A national number matching
    BE's mobile pattern is valid, and its E.164 form is `+32` and the national number. The
    shortcut exists only while the installed metadata says exactly that.
    """
    metadata = phonenumbers.PhoneMetadata.metadata_for_region("BE")
    mobile = None if metadata is None else metadata.mobile
    if (
        metadata is None
        or mobile is None
        or metadata.country_code != 32
        or metadata.international_prefix != "00"
        or metadata.national_prefix_for_parsing != "0"
        or metadata.national_prefix_transform_rule is not None
        or mobile.national_number_pattern != r"4[5-9]\d{7}"
        or mobile.possible_length != (9,)
    ):
        return None
    return re.compile(r"(?:\+32|0032|0)(4[5-9]\d{7})")


_MAX_PHONE = 40
_BE_MOBILE = _be_mobile_shortcut()


@lru_cache(maxsize=65_536)
def _e164(raw: str, default_region: str) -> str:
    if not raw or len(raw) > _MAX_PHONE:
        raise InvalidIdentifier(IdentifierKind.PHONE, "empty or too long")
    try:
        number = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException:
        raise InvalidIdentifier(IdentifierKind.PHONE, "not a phone number") from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidIdentifier(IdentifierKind.PHONE, "not a number that can exist")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_email(raw: str) -> Identifier:
    """Trimmed, case-folded e-mail address."""
    value = raw.strip().casefold()
    if len(value) > _MAX_IDENTIFIER or not _EMAIL.match(value):
        raise InvalidIdentifier(IdentifierKind.EMAIL, "not an e-mail address")
    return Identifier(IdentifierKind.EMAIL, value)


def qualify_handle(platform: str, raw: str) -> Identifier:
    """`platform:handle`, lower-cased, without a leading `@`, on a known platform."""
    handle = raw.strip().lstrip("@").casefold()
    platform = platform.strip().casefold()
    if not platform or not _HANDLE.match(handle):
        raise InvalidIdentifier(IdentifierKind.SOCIAL_HANDLE, "not a social-media handle")
    if platform not in SOCIAL_PLATFORMS:
        known = ", ".join(sorted(SOCIAL_PLATFORMS))
        raise InvalidIdentifier(IdentifierKind.SOCIAL_HANDLE, f"unknown platform (one of {known})")
    return Identifier(IdentifierKind.SOCIAL_HANDLE, f"{platform}:{handle}")


def customer_reference(raw: str) -> Identifier:
    """The controller's customer reference as given (surrounding spaces removed)."""
    value = raw.strip()
    if not value or len(value) > _MAX_IDENTIFIER:
        raise InvalidIdentifier(IdentifierKind.CUSTOMER_REF, "empty or too long")
    return Identifier(IdentifierKind.CUSTOMER_REF, value)
