"""Realistic (and obviously fake) producer events per channel, as JSON Lines objects.

Each event is what a producing system writes on one line of a .jsonl file: ISO-8601 timestamps
with a timezone, ``kind``, and the payload as a plain object. All are valid against the latest
contract of their channel (``CHANNEL_CONTRACTS``). Phone numbers use the +32 471 range,
e-mail addresses example.org; every person is invented.
"""

from __future__ import annotations

import copy
from typing import Any, Final

__all__ = ["CHANNELS", "example_events"]


def _envelope(
    event_id: str, contact_id: str, occurred_at: str, source: str, service: str, **extra: Any
) -> dict[str, Any]:
    subject = extra.pop("subject", {})
    return {
        "event_id": event_id,
        "contact_id": contact_id,
        "occurred_at": occurred_at,
        "source_system": source,
        "client": "ORES",
        "service": service,
        **extra,
        "subject": subject,
    }


_PHONE: Final[list[dict[str, Any]]] = [
    {
        "envelope": _envelope(
            "0b8f6a52-3c1e-4d0a-9a51-6f1d2c7e8a01",
            "call-20250304-000101",
            "2025-03-04T09:17:42+01:00",
            "acd",
            "outage_report",
            site="gosselies",
            language="fr",
            subject={"phone": "+32 471 12 34 56", "customer_ref": "ORES-CUST-0000012345"},
        ),
        "kind": "inbound_call",
        "payload": {
            "call_id": "acd-7f3a91",
            "queue": "ores-outage-fr",
            "agent_id": "agent-gos-042",
            "answered_at": "2025-03-04T09:15:31+01:00",
            "ended_at": "2025-03-04T09:17:42+01:00",
            "duration_s": 131,
            "outcome": "answered",
            "ivr_path": "fr>panne>electricite",
            "queued_at": "2025-03-04T09:14:58+01:00",
            "wrap_up_s": 45,
        },
    },
    {
        "envelope": _envelope(
            "5d2c9e7b-8a41-4f6e-b3d0-2e9a7c1f4b02",
            "cb-20250304-000317",
            "2025-03-04T10:02:05Z",
            "acd",
            "callback",
            language="de",
            subject={"phone": "+32 471 98 76 54"},
        ),
        "kind": "callback_requested",
        "payload": {
            "callback_id": "cb-000317",
            "requested_for": "2025-03-04T14:30:00+01:00",
            "callback_number": "+32 471 55 44 33",
        },
    },
    {
        "envelope": _envelope(
            "9e1a4c3d-6b2f-4a8e-9c7d-1f0b3e5a6c03",
            "call-20250304-000101",
            "2025-03-04T09:18:10+01:00",
            "recorder",
            "outage_report",
            site="gosselies",
            purpose="coaching",
            subject={"phone": "+32 471 12 34 56"},
        ),
        "kind": "recording_available",
        "payload": {
            "recording_id": "rec-2025-03-04-7f3a91",
            "call_id": "acd-7f3a91",
            "media_ref": "recstore://calls/2025/03/04/rec-2025-03-04-7f3a91.opus",
            "started_at": "2025-03-04T09:15:31+01:00",
            "ended_at": "2025-03-04T09:17:42+01:00",
            "agent_id": "agent-gos-042",
        },
    },
    {
        "envelope": _envelope(
            "c4b7d2e1-0f3a-4b6c-8d9e-2a1b3c4d5e04",
            "c2c-20250305-000021",
            "2025-03-05T18:45:12.250+01:00",
            "web-c2c",
            "click_to_call",
            site="eupen",
            language="de",
            subject={"phone": "+32 471 00 11 22"},
        ),
        "kind": "click_to_call",
        "payload": {"request_id": "c2c-000021", "page": "/de/stoerungen/melden"},
    },
]

_CHAT: Final[list[dict[str, Any]]] = [
    {
        "envelope": _envelope(
            "1a2b3c4d-5e6f-4a1b-8c2d-3e4f5a6b7c11",
            "chat-20250306-004411",
            "2025-03-06T11:05:00+01:00",
            "chat-gateway",
            "chatbot",
            language="fr",
            subject={"email": "lea.dupont@example.org"},
        ),
        "kind": "chatbot_session",
        "payload": {
            "session_id": "chat-004411",
            "started_at": "2025-03-06T10:58:20+01:00",
            "ended_at": "2025-03-06T11:05:00+01:00",
            "message_count": 9,
            "handed_to_agent": True,
            "agent_id": "agent-gos-017",
            "first_response_at": "2025-03-06T10:58:22+01:00",
        },
    },
    {
        "envelope": _envelope(
            "2b3c4d5e-6f7a-4b2c-9d3e-4f5a6b7c8d12",
            "chat-20250306-004411",
            "2025-03-06T11:06:30+01:00",
            "chat-gateway",
            "customer_contact",
            site="gosselies",
            language="fr",
            subject={"email": "lea.dupont@example.org"},
        ),
        "kind": "transcript_available",
        "payload": {
            "transcript_id": "tr-004411",
            "session_id": "chat-004411",
            "messages": [
                {
                    "sender": "customer",
                    "sent_at": "2025-03-06T10:58:20+01:00",
                    "text": "Bonjour, mon compteur affiche une erreur depuis ce matin.",
                },
                {
                    "sender": "bot",
                    "sent_at": "2025-03-06T10:58:22+01:00",
                    "text": "Je vous mets en relation avec un conseiller.",
                },
                {
                    "sender": "agent",
                    "sent_at": "2025-03-06T11:01:04+01:00",
                    "text": "Bonjour Madame Dupont, pouvez-vous me donner votre code EAN ?",
                },
            ],
        },
    },
]

_EMAIL: Final[list[dict[str, Any]]] = [
    {
        "envelope": _envelope(
            "3c4d5e6f-7a8b-4c3d-8e4f-5a6b7c8d9e21",
            "mail-20250307-000912",
            "2025-03-07T08:31:44+01:00",
            "mail-gateway",
            "complaint",
            language="fr",
            subject={"email": "marc.lambert@example.org", "customer_ref": "ORES-CUST-0000098765"},
        ),
        "kind": "email_received",
        "payload": {
            "message_id": "<20250307083144.912@mail.example.org>",
            "mailbox": "clients@ores.example",
            "subject": "Réclamation facture de régularisation",
            "body": "Madame, Monsieur, je conteste le relevé de mon compteur du 12 février...",
            "attachment_count": 1,
        },
    },
    {
        "envelope": _envelope(
            "4d5e6f7a-8b9c-4d4e-9f5a-6b7c8d9e0f22",
            "mail-20250307-000912",
            "2025-03-07T15:02:10+01:00",
            "mail-gateway",
            "complaint",
            site="eupen",
            language="de",
            subject={"email": "anna.schmitz@example.org"},
        ),
        "kind": "email_sent",
        "payload": {
            "message_id": "<20250307150210.77@ores.example>",
            "mailbox": "kunden@ores.example",
            "subject": "AW: Zählerstand",
            "body": "Sehr geehrte Frau Schmitz, vielen Dank ...",
            "attachment_count": 0,
            "in_reply_to": "<20250306.55@mail.example.org>",
            "replied_to_received_at": "2025-03-06T16:48:05+01:00",
        },
    },
]

_SURVEY: Final[list[dict[str, Any]]] = [
    {
        "envelope": _envelope(
            "5e6f7a8b-9c0d-4e5f-8a6b-7c8d9e0f1a31",
            "srv-20250308-000045",
            "2025-03-08T12:00:00+01:00",
            "survey-tool",
            "satisfaction_survey",
            subject={"phone": "+32 471 12 34 56"},
        ),
        "kind": "survey_sent",
        "payload": {
            "survey_id": "nps-000045",
            "survey_type": "sms",
            "related_contact_id": "call-20250304-000101",
        },
    },
    {
        "envelope": _envelope(
            "6f7a8b9c-0d1e-4f6a-9b7c-8d9e0f1a2b32",
            "srv-20250308-000045",
            "2025-03-08T12:41:09+01:00",
            "survey-tool",
            "satisfaction_survey",
            language="fr",
            subject={"phone": "+32 471 12 34 56"},
        ),
        "kind": "survey_answered",
        "payload": {
            "survey_id": "nps-000045",
            "score": 8,
            "comment": "Conseiller très aimable, mais attente un peu longue.",
            "survey_type": "sms",
            "related_channel": "phone",
            "csat": 4,
        },
    },
]

_SOCIAL: Final[list[dict[str, Any]]] = [
    {
        "envelope": _envelope(
            "7a8b9c0d-1e2f-4a7b-8c8d-9e0f1a2b3c41",
            "soc-20250309-000201",
            "2025-03-09T19:22:03+01:00",
            "social-tool",
            "social_moderation",
            language="fr",
            subject={"social_handle": {"platform": "facebook", "handle": "julie.martin.example"}},
        ),
        "kind": "comment_received",
        "payload": {
            "comment_id": "fb-c-000201",
            "platform": "facebook",
            "post_ref": "fb-p-panne-0309",
            "author_display_name": "Julie Martin",
            "text": "Toujours pas de courant rue de l'Exemple à Charleroi, c'est prévu quand ?",
        },
    },
    {
        "envelope": _envelope(
            "8b9c0d1e-2f3a-4b8c-9d9e-0f1a2b3c4d42",
            "soc-20250309-000201",
            "2025-03-09T19:40:51+01:00",
            "social-tool",
            "social_moderation",
            site="gosselies",
            subject={"social_handle": {"platform": "facebook", "handle": "julie.martin.example"}},
        ),
        "kind": "reply_sent",
        "payload": {
            "comment_id": "fb-c-000201",
            "reply_id": "fb-r-000388",
            "agent_id": "agent-gos-023",
            "text": "Bonjour Julie, nos équipes sont sur place, retour prévu vers 21h.",
            "comment_received_at": "2025-03-09T19:22:03+01:00",
        },
    },
    {
        "envelope": _envelope(
            "9c0d1e2f-3a4b-4c9d-8e0f-1a2b3c4d5e43",
            "soc-20250309-000207",
            "2025-03-09T20:05:00+01:00",
            "social-tool",
            "social_moderation",
            subject={"social_handle": {"platform": "instagram", "handle": "troll_example_be"}},
        ),
        "kind": "moderated",
        "payload": {
            "comment_id": "ig-c-000207",
            "action": "hidden",
            "reason": "insult",
            "comment_received_at": "2025-03-09T19:58:40+01:00",
        },
    },
]

_EVENTS: Final[dict[str, list[dict[str, Any]]]] = {
    "phone": _PHONE,
    "chat": _CHAT,
    "email": _EMAIL,
    "survey": _SURVEY,
    "social": _SOCIAL,
}
CHANNELS: Final = tuple(_EVENTS)


def example_events(channel: str) -> list[dict[str, Any]]:
    """2-4 fresh copies of fake producer events for ``channel`` (phone, chat, email, ...)."""
    if channel not in _EVENTS:
        raise ValueError(f"unknown channel {channel!r}; expected one of {', '.join(CHANNELS)}")
    return copy.deepcopy(_EVENTS[channel])
