"""The declared topic names, each spelled once.

`infra/topics.yaml` declares these topics (partitions, retention, contract); code names them
through these constants, and the deployment's topic prefix is added by `TopicCatalog.name`.
A test checks that this module and the YAML declare the same set.
"""

from __future__ import annotations

from typing import Final

CHANNELS: Final = ("phone", "chat", "email", "survey", "social")


def raw_topic(channel: str) -> str:
    """The raw topic of a channel, e.g. `contact.raw.phone.v1`; ValueError if unknown."""
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}; expected one of {CHANNELS}")
    return f"contact.raw.{channel}.v1"


RAW_TOPICS: Final = tuple(raw_topic(channel) for channel in CHANNELS)

# data plane: where the router writes
CONTACT_ORES: Final = "contact.ores.v1"
CONTACT_COMNEXIO: Final = "contact.comnexio.v1"
CONTACT_RESTRICTED: Final = "contact.restricted.v1"
CONTACT_QUARANTINE: Final = "contact.quarantine.v1"
CONTACT_DEADLETTER: Final = "contact.deadletter.v1"
RECORDINGS_STANDARD: Final = "recordings.standard.v1"
RECORDINGS_HOLD: Final = "recordings.hold.v1"
RECORDINGS_EXPIRED: Final = "recordings.expired.v1"
RETENTION_SIGNALS: Final = "retention.signals.v1"

# control plane: privacy requests and their commands
PRIVACY_REQUESTS: Final = "privacy.requests.v1"
PRIVACY_CONTROLLER_ORES: Final = "privacy.controller.ores.v1"
PRIVACY_INSTRUCTIONS: Final = "privacy.instructions.v1"
PRIVACY_ERASURE: Final = "privacy.erasure.v1"
PRIVACY_RESTRICTION: Final = "privacy.restriction.v1"
PRIVACY_ACKS: Final = "privacy.acks.v1"
PRIVACY_SUBJECT_STATE: Final = "privacy.subject-state.v1"
PRIVACY_AUDIT: Final = "privacy.audit.v1"

# reporting: the KPI app's repartitioned facts, its table's changelog, its figures
REPORTING_FACTS: Final = "reporting.facts.v1"
REPORTING_CELLS_CHANGELOG: Final = "reporting.cells-changelog.v1"
REPORTING_KPI: Final = "reporting.kpi.v1"

CONTROLLER_TOPICS: Final = {"ORES": CONTACT_ORES, "COMNEXIO": CONTACT_COMNEXIO}

DECLARED: Final = frozenset(
    {*RAW_TOPICS, CONTACT_ORES, CONTACT_COMNEXIO, CONTACT_RESTRICTED, CONTACT_QUARANTINE,
     CONTACT_DEADLETTER, RECORDINGS_STANDARD, RECORDINGS_HOLD, RECORDINGS_EXPIRED,
     RETENTION_SIGNALS, PRIVACY_REQUESTS, PRIVACY_CONTROLLER_ORES, PRIVACY_INSTRUCTIONS,
     PRIVACY_ERASURE, PRIVACY_RESTRICTION, PRIVACY_ACKS, PRIVACY_SUBJECT_STATE, PRIVACY_AUDIT,
     REPORTING_FACTS, REPORTING_CELLS_CHANGELOG, REPORTING_KPI}
)  # fmt: skip
