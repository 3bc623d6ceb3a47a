"""Access and portability (GDPR Arts. 15 and 20): every decrypted record of the subject.

Reads the tagged topics (keyed by subject pseudonym, so only the subject's records are
opened), decrypts each with the subject's key from the vault, and writes one JSON
document: machine-readable and portable, each record with its controller, purpose, legal
basis and policy version, plus the subject's recordings known to the ledger.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from processors.crypto import KeyUnavailable
from processors.privacy import PrivacyRequest
from streams.bootstrap import Container
from streams.keys import load_keys
from streams.ledger import RetentionLedger, session_factory
from streams.ledger.subjects import subject_family
from streams.plaintext import open_event, vault_lookup
from streams.readback import read_all

TAGGED_TOPICS = ("contact.ores.v1", "contact.comnexio.v1", "contact.restricted.v1")
PROGRESS_EVERY = 10_000


def export_subject_data(
    container: Container, request: PrivacyRequest, out: Path, now: datetime,
    say: Callable[[str], None],
) -> int:  # fmt: skip
    """Write the export to `out` (created with mode 0600); returns how many records."""
    from schemas.serde import AvroSerde

    serde = AvroSerde(container.schemas)
    master = load_keys(container.settings).master_key
    config = container.settings.kafka_client_config()
    records: list[dict[str, Any]] = []
    with session_factory(container.ledger_engine)() as session:
        family = subject_family(session, request.subjects)
        wanted = {s.encode() for s in family}
        keys = vault_lookup(session)
        for logical in TAGGED_TOPICS:
            messages = read_all(config, container.topics.name(logical))
            say(f"export: reading {logical} ({len(messages)} record(s))")
            for index, message in enumerate(messages, 1):
                if index % PROGRESS_EVERY == 0:
                    say(f"export: {logical} {index}/{len(messages)}")
                if message.key() not in wanted or message.value() is None:
                    continue
                _, tagged = serde.deserialize(message.value() or b"")
                records.append(_record(logical, tagged, serde, master, keys))
        ledger = RetentionLedger(session)
        recordings = [
            {"recording_id": r.recording_id, "kind": r.recording_kind, "channel": r.channel,
             "controller": r.controller, "purpose": r.purpose, "state": r.state,
             "media_ref": r.media_ref, "retain_until": r.retain_until.isoformat()}
            for s in request.subjects for r in ledger.recordings_for("subject", s)
        ]  # fmt: skip
    document = {
        "request_id": request.request_id, "request_type": request.request_type.value,
        "generated_at": now.isoformat(), "format": "contactflow-subject-export/1",
        "subjects": sorted(family), "records": records, "recordings": recordings,
    }  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    out.touch(mode=0o600, exist_ok=True)
    out.write_text(json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n")
    return len(records)


def _record(
    logical: str, tagged: dict[str, Any], serde: Any, master: bytes, keys: Any
) -> dict[str, Any]:
    governance = tagged["governance"]
    entry = {
        "topic": logical, "event_id": tagged["event_id"], "channel": tagged["channel"],
        "kind": tagged["kind"], "occurred_at": str(tagged["occurred_at"]),
        "controller": governance["controller"], "processor": governance["processor"],
        "purpose": governance["purpose"], "legal_basis": governance["legal_basis"],
        "policy_version": governance["policy_version"], "restricted": governance["restricted"],
    }  # fmt: skip
    try:
        entry["event"] = open_event(serde, tagged, master, keys)
    except KeyUnavailable:
        entry["event"] = None  # erased: nothing readable remains
    return entry
