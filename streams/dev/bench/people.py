"""Synthetic people for the privacy benchmark: one phone number, fresh event ids."""

from __future__ import annotations

import copy
import uuid
from typing import Any

from schemas.examples import example_events

_KINDS = (("phone", "inbound_call"), ("chat", "chatbot_session"), ("email", "email_received"),
          ("survey", "survey_answered"), ("social", "comment_received"))  # fmt: skip


def _fresh(channel: str, kind: str, phone: str) -> dict[str, Any]:
    event = copy.deepcopy(next(e for e in example_events(channel) if e["kind"] == kind))
    event["envelope"]["event_id"] = str(uuid.uuid4())
    event["envelope"]["contact_id"] = f"bench-{uuid.uuid4().hex[:12]}"
    event["envelope"]["subject"] = {"phone": phone}
    return event


def person_events(phone: str) -> list[tuple[str, dict[str, Any]]]:
    """One event on each of the five channels, all naming the person by `phone`."""
    return [(channel, _fresh(channel, kind, phone)) for channel, kind in _KINDS]


def probe_event(phone: str) -> dict[str, Any]:
    """An inbound call from `phone` (contact handling for ORES)."""
    return _fresh("phone", "inbound_call", phone)
