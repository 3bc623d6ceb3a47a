"""Access and portability (GDPR Arts. 15 and 20): every decrypted record of the subject.

Reads the tagged topics (keyed by subject pseudonym, so only the subject's records are
opened), decrypts each with the subject's key from the vault, and writes one JSON
document for the person (`contactflow-subject-export/2`): a header (`about`, in French,
the notice's language, and English) saying what the file is, for which request, when it
was made, which controllers' data it holds and what the codes mean; then each record as a
plain object (Avro unions as their branch, times in ISO-8601 UTC, bytes in base64) with
its controller, purpose, legal basis and policy version; then the subject's recordings
known to the ledger.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

from processors.crypto import KeyUnavailable
from processors.privacy import PrivacyRequest
from schemas.topic_names import CONTACT_COMNEXIO, CONTACT_ORES, CONTACT_RESTRICTED
from streams.bootstrap import Container
from streams.kafka.readback import read_all
from streams.keys import load_keys
from streams.ledger import RetentionLedger, session_factory
from streams.ledger.subjects import subject_family
from streams.plaintext import open_event, vault_lookup
from streams.sdk.tagged import read_tagged

TAGGED_TOPICS = (CONTACT_ORES, CONTACT_COMNEXIO, CONTACT_RESTRICTED)
PROGRESS_EVERY = 10_000
FORMAT = "contactflow-subject-export/2"

# Who the controllers are, as the privacy notice (§2, §4, §7) presents them.
CONTROLLERS: dict[str, dict[str, Any]] = {
    "ORES": {
        "legal_name": "ORES Scrl, avenue Jean Monnet 2, 1348 Louvain-la-Neuve",
        "role": {
            "fr": "responsable du traitement des données des utilisateurs du réseau de "
                  "distribution ; COMNEXIO traite ces données pour son compte (sous-traitant)",
            "en": "controller of the distribution network users' data; COMNEXIO processes "
                  "it on ORES's behalf (processor)",
        },
        "privacy_notice": "https://www.ores.be/notice-vie-privee",
    },
    "COMNEXIO": {
        "legal_name": "COMNEXIO SC, avenue Georges Lemaire 38, 6041 Gosselies",
        "role": {
            "fr": "responsable du traitement pour l'amélioration de ses services, la "
                  "formation et le coaching de son personnel (réécoutes)",
            "en": "controller for improving its services and training and coaching its "
                  "staff (re-listened recordings)",
        },
        "privacy_notice": "https://www.comnexio.be",
    },
}  # fmt: skip
DPO = "COMNEXIO - Service Juridique, à l'attention du DPO, avenue Albert 1er 19, 5000 Namur"
# What the purpose and legal-basis codes of the records mean.
LEGEND: dict[str, dict[str, str]] = {
    "contact_handling": {"fr": "gestion de vos contacts avec le centre de contact pour ORES",
                         "en": "handling your contacts with the contact centre for ORES"},
    "coaching": {"fr": "coaching du personnel (réécoute)", "en": "staff coaching (re-listening)"},
    "staff_training": {"fr": "formation du personnel", "en": "staff training"},
    "service_improvement": {"fr": "amélioration des services", "en": "service improvement"},
    "public_task": {"fr": "mission d'intérêt public (RGPD art. 6.1.e)",
                    "en": "public task (GDPR Art. 6(1)(e))"},
    "legal_obligation": {"fr": "obligation légale (RGPD art. 6.1.c)",
                         "en": "legal obligation (GDPR Art. 6(1)(c))"},
    "legitimate_interest": {"fr": "intérêt légitime (RGPD art. 6.1.f)",
                            "en": "legitimate interest (GDPR Art. 6(1)(f))"},
    "contract": {"fr": "contrat (RGPD art. 6.1.b)", "en": "contract (GDPR Art. 6(1)(b))"},
    "consent": {"fr": "consentement (RGPD art. 6.1.a)", "en": "consent (GDPR Art. 6(1)(a))"},
    "vital_interests": {"fr": "intérêts vitaux (RGPD art. 6.1.d)",
                        "en": "vital interests (GDPR Art. 6(1)(d))"},
}  # fmt: skip


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
                tagged = read_tagged(serde, message.value() or b"")
                records.append(_record(logical, tagged, serde, master, keys))
        ledger = RetentionLedger(session)
        recordings = [
            {"recording_id": r.recording_id, "kind": r.recording_kind, "channel": r.channel,
             "controller": r.controller, "purpose": r.purpose, "state": r.state,
             "media_ref": r.media_ref, "retain_until": iso(r.retain_until)}
            for s in request.subjects for r in ledger.recordings_for("subject", s)
        ]  # fmt: skip
    document = {
        "about": about(request, now, records, recordings),
        "records": records, "recordings": recordings,
    }  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    out.touch(mode=0o600, exist_ok=True)
    out.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return len(records)


def about(
    request: PrivacyRequest, now: datetime, records: list[dict[str, Any]],
    recordings: list[dict[str, Any]],
) -> dict[str, Any]:  # fmt: skip
    """The header: what the file is, for which request, when, whose data, what it holds."""
    owners = sorted({r["controller"] for r in records} | {r["controller"] for r in recordings})
    channels = dict(sorted(Counter(r["channel"] for r in records).items()))
    erased = sum(1 for r in records if r["event"] is None)
    codes = {r["purpose"] for r in records} | {r["legal_basis"] for r in records}
    right_fr, right_en = (("droit d'accès (RGPD art. 15)", "right of access (GDPR Art. 15)")
                          if request.request_type.value == "access" else
                          ("droit à la portabilité (RGPD art. 20)",
                           "right to data portability (GDPR Art. 20)"))  # fmt: skip
    made = f"{now.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
    return {
        "fr": (
            f"Copie de vos données à caractère personnel, au titre du {right_fr}, demande "
            f"{request.request_id}, établie le {made}. Elle contient {len(records)} "
            f"enregistrement(s) de vos contacts avec le centre de contact COMNEXIO (appels, "
            "chat, e-mails, enquêtes, réseaux sociaux), chacun avec son responsable du "
            "traitement, sa finalité et sa base légale, et la liste de vos enregistrements "
            f"({len(recordings)}) avec leur date de fin de conservation. Questions : {DPO}. "
            "Vous pouvez aussi introduire une réclamation auprès de l'Autorité de protection "
            "des données."
        ),
        "en": (
            f"A copy of your personal data, under the {right_en}, request "
            f"{request.request_id}, made on {made}. It holds {len(records)} record(s) of your "
            "contacts with the COMNEXIO contact centre (calls, chat, e-mails, surveys, "
            "social media), each with its controller, purpose and legal basis, and the list "
            f"of your recordings ({len(recordings)}) with the date each is kept until. "
            f"Questions: {DPO}. You may also complain to the Belgian Data Protection Authority."
        ),
        "format": FORMAT,
        "request": {
            "id": request.request_id,
            "type": request.request_type.value,
            "received_at": iso(request.received_at),
        },
        "generated_at": iso(now),
        "controllers": [{"name": name, **CONTROLLERS.get(name, {})} for name in owners],
        "contents": {
            "records": len(records),
            "records_by_channel": channels,
            "records_erased": erased,
            "recordings": len(recordings),
        },
        "legend": {code: LEGEND[code] for code in sorted(codes) if code in LEGEND},
        "times": "ISO-8601, UTC",
    }


def plain(value: Any) -> Any:
    """A decoded Avro value as plain JSON: a union's (name, value) pair as its value, times
    in ISO-8601 UTC, dates ISO, bytes in base64, decimals and UUIDs as text."""
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
        return plain(value[1])  # fastavro's return_record_name pair
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, Decimal | UUID):
        return str(value)
    return value


def iso(moment: datetime) -> str:
    """`2026-12-02T04:28:02Z` (milliseconds when there are any)."""
    moment = moment.astimezone(UTC)
    spec = "milliseconds" if moment.microsecond else "seconds"
    return moment.isoformat(timespec=spec).replace("+00:00", "Z")


def _record(
    logical: str, tagged: dict[str, Any], serde: Any, master: bytes, keys: Any
) -> dict[str, Any]:
    governance = tagged["governance"]
    entry = {
        "topic": logical, "event_id": tagged["event_id"], "channel": tagged["channel"],
        "kind": tagged["kind"], "occurred_at": iso(tagged["occurred_at"]),
        "controller": governance["controller"], "processor": governance["processor"],
        "purpose": governance["purpose"], "legal_basis": governance["legal_basis"],
        "policy_version": governance["policy_version"], "restricted": governance["restricted"],
    }  # fmt: skip
    try:
        entry["event"] = plain(open_event(serde, tagged, master, keys))
    except KeyUnavailable:
        entry["event"] = None  # erased: nothing readable remains
    return entry
