"""One person reaching the contact centre on five channels, with different identifiers the
subject index links (a phone call, a chat giving phone and e-mail, an e-mail, a survey
answer, a social comment giving e-mail and handle). Shared by router and privacy tests."""

from __future__ import annotations

import copy
import uuid
from typing import Any

from schemas.examples import example_events

PHONE = "+32 471 55 66 77"
EMAIL = "Marie.Lambert@Example.org"
HANDLE = "marie.lambert.be"
TEXT = "Ma facture de janvier est beaucoup trop haute"
RAW_SPELLINGS = (b"+32471556677", b"471 55 66 77", b"0032471556677", b"Lambert", b"lambert",
                 TEXT.encode())  # fmt: skip
"""Spellings with '+' or spaces cannot occur by chance in hex ids or base64url tokens."""


def fresh(event: dict[str, Any], **subject: Any) -> dict[str, Any]:
    event = copy.deepcopy(event)
    event["envelope"]["event_id"] = str(uuid.uuid4())
    event["envelope"]["contact_id"] = f"c-{uuid.uuid4().hex[:10]}"
    if subject:
        event["envelope"]["subject"] = subject
    return event


def example(channel: str, kind: str) -> dict[str, Any]:
    return next(e for e in example_events(channel) if e["kind"] == kind)


def one_person_on_five_channels() -> list[tuple[str, dict[str, Any]]]:
    call = fresh(example("phone", "inbound_call"), phone="0471 55 66 77")
    chat = fresh(example("chat", "transcript_available"), phone=PHONE, email=EMAIL)
    chat["payload"]["messages"][0]["text"] = TEXT
    mail = fresh(example("email", "email_received"), email=EMAIL.upper())
    mail["payload"]["body"] = TEXT
    survey = fresh(example("survey", "survey_answered"), phone="0032471556677")
    social = fresh(
        example("social", "comment_received"),
        email=EMAIL,
        social_handle={"platform": "facebook", "handle": HANDLE},
    )
    return [("phone", call), ("chat", chat), ("email", mail), ("survey", survey),
            ("social", social)]  # fmt: skip


def coaching_recording(phone: str = PHONE) -> dict[str, Any]:
    """A call recording re-listened for coaching: COMNEXIO is its controller."""
    recording = fresh(example("phone", "recording_available"), phone=phone)
    recording["envelope"]["purpose"] = "coaching"
    return recording
