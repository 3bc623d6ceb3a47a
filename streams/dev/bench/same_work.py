"""Same-work tagging: what the router does per event, for a peer to do in its own framework.

Per raw event, with the project's own functions (so the work is the router's):

- Avro-decode it (`schemas.serde`) and attribute it with the policy (`processors.policy`);
- normalise every identifier of its subject (`processors.routing.subject_identifiers`, i.e.
  `processors.identity`) and digest each with the keyed HMAC (`processors.pseudonym`); the
  contact id stands for a subject that names nobody. Like the router's decode stage, the
  digests are remembered per spelling of the subject's identifiers (bounded, cleared when
  full), so repeat callers skip the normalisation and the HMACs;
- look the subject up by those digests in a dict standing in for the ledger's subject
  index (first digest found wins; unknown digests are linked to it; a new subject's
  pseudonym derives from its first digest, as the router's does); no merge of two known
  subjects, which the router's ledger does;
- one AES-256-GCM data key per subject (`processors.crypto`), made on first sight, wrapped
  under a master key and kept, wrapped and unwrapped, in a dict standing in for the key
  vault; every PII field of the event (`Contract.pii_fields`) encrypted with a fresh nonce
  and the event re-encoded with the tokens, which gives the bytes the router seals;
- the subject's privacy state read from a dict (empty: nobody restricted or objecting) and
  the route chosen (`processors.routing.choose_route`); the footprint (subject, controller,
  channel) added to a set standing in for the ledger's footprints;
- outputs, Avro-encoded with the contracts the router writes: the TaggedContactEvent on
  the controller's topic (the restricted topic for a restricted subject) keyed by
  pseudonym; for a recording kind whose class keeps
  recordings, a RecordingRetention on recordings.standard.v1 keyed by recording id; for a
  hold service, a HoldSignal on retention.signals.v1 keyed by pseudonym; with no policy
  rule, a QuarantinedEvent (sealed too) on the quarantine topic keyed by contact id.

Not done (the router does them): the dedup window, payload range and id checks, dead
letters, output size limits, the ledger's transaction and fsync, telemetry. A refused
identifier raises: the bench input is all valid.

Imports only schemas, processors, cryptography and PyYAML: the Quix peer runs it in
another virtualenv.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from processors.crypto import FieldCipher, KeyWrapper, new_data_key
from processors.identity import Identifier, IdentifierKind
from processors.pii import PiiPath, compile_paths, rewrite_pii
from processors.policy import Decisions, Policy
from processors.pseudonym import Pseudonymiser
from processors.routing import (
    NO_RESTRICTIONS,
    Route,
    SubjectStatus,
    choose_route,
    excluded_purposes,
    recording_of,
    retain_until,
    subject_identifiers,
)
from schemas import records
from schemas.catalog import CHANNEL_CONTRACTS, Contract, SchemaCatalog
from schemas.serde import AvroSerde
from streams.dev.bench.spec import COMNEXIO, ORES, QUARANTINE, RECORDINGS, RESTRICTED, SIGNALS
from streams.dev.bench.tagging import Routed, load_policy
from streams.router.templates import tagged_record

_CHANNEL_OF: Final = {name: channel for channel, name in CHANNEL_CONTRACTS.items()}
_MAX_REMEMBERED_SPELLINGS: Final = 100_000  # as the router's decode stage
Digests = tuple[tuple[str, str], ...]


class SameWorkTagger:
    """`tag(raw) -> [Routed, ...]`; built once per peer process, then called per event.

    The dicts (`subjects`, `vault`, `statuses`, `footprints`) stand in for the ledger;
    they grow with the distinct people seen, which a bench run keeps small.
    """

    def __init__(
        self,
        catalog: SchemaCatalog,
        policy: Policy,
        pseudonyms: Pseudonymiser,
        master_key: bytes,
        outputs: Mapping[str, str],
    ) -> None:
        self._serde = AvroSerde(catalog)
        self._tagged = catalog.latest("TaggedContactEvent")
        self._quarantined = catalog.latest("QuarantinedEvent")
        self._retention = catalog.latest("RecordingRetention")
        self._signal = catalog.latest("HoldSignal")
        self._policy = policy
        self._decisions = Decisions(policy)
        self._derived = policy.derived_purpose_names
        self._pseudonyms = pseudonyms
        self._wrapper = KeyWrapper(master_key)
        self._controller_topic = {"ORES": outputs[ORES], "COMNEXIO": outputs[COMNEXIO]}
        self._quarantine = outputs[QUARANTINE]
        self._restricted = outputs[RESTRICTED]
        self._recordings = outputs[RECORDINGS]
        self._signals = outputs[SIGNALS]
        self._pii: dict[bytes, tuple[PiiPath, ...]] = {}
        self._digests: dict[tuple[Any, ...], Digests] = {}
        self.subjects: dict[str, str] = {}  # identifier digest -> subject pseudonym
        self.vault: dict[str, tuple[str, bytes, FieldCipher]] = {}  # key id, wrapped, cipher
        self.statuses: dict[str, SubjectStatus] = {}
        self.footprints: set[tuple[str, str, str]] = set()

    def tag(self, raw: bytes) -> list[Routed]:
        writer, record = self._serde.deserialize(raw)
        envelope = record["envelope"]
        channel = _CHANNEL_OF[writer.name]
        kind = record["kind"]
        contact_id = envelope["contact_id"]
        attribution, hold_reason = self._decisions(
            (envelope["client"], envelope["service"], envelope["purpose"], channel, kind)
        )
        subject = self._subject(self._subject_digests(envelope["subject"], contact_id))
        status = self.statuses.get(subject, NO_RESTRICTIONS)
        route = choose_route(attribution, status)
        if route is Route.SUPPRESSED:
            return []
        key_id, _, cipher = self._key_of(subject)
        encrypt = cipher.encrypt
        rewrite_pii(record, self._pii_paths(writer), lambda path, text: encrypt(text, path))
        sealed = self._serde.serialize(record, writer)
        if route is Route.QUARANTINE or attribution is None:
            quarantined = self._quarantine_record(record, writer, subject, key_id, sealed)
            return [Routed(self._quarantine, contact_id.encode(), quarantined)]
        subject_key = subject.encode()
        restricted = route is Route.RESTRICTED
        tagged = tagged_record(
            envelope["event_id"], contact_id, channel, kind, envelope["occurred_at"],
            attribution, restricted, subject, key_id, writer.fingerprint_hex, sealed, None,
            excluded_purposes(status, self._derived),
        )  # fmt: skip
        topic = self._restricted if restricted else self._controller_topic[attribution.controller]
        routed = [Routed(topic, subject_key, self._serde.serialize(tagged, self._tagged))]
        self.footprints.add((subject, attribution.controller, channel))
        recording = recording_of(kind, record["payload"], envelope["occurred_at"])
        if recording is not None:
            period = self._policy.retention_classes[attribution.retention_class]
            until = retain_until(recording.ended_at, period.recording_period_days)
            if until is not None:
                retention = records.recording_retention(
                    recording_id=recording.recording_id, contact_id=contact_id,
                    channel=channel, recording_kind=recording.recording_kind,
                    media_ref=recording.media_ref, controller=attribution.controller,
                    purpose=attribution.purpose, subject_pseudonym=subject,
                    ended_at=recording.ended_at, retain_until=until,
                    policy_version=attribution.policy_version,
                )  # fmt: skip
                value = self._serde.serialize(retention, self._retention)
                routed.append(Routed(self._recordings, recording.recording_id.encode(), value))
        if hold_reason is not None:
            signal = {
                "signal_id": envelope["event_id"],
                "reason": hold_reason,
                "subject_pseudonym": subject,
                "contact_id": contact_id,
                "channel": channel,
                "kind": kind,
                "occurred_at": envelope["occurred_at"],
                "policy_version": self._policy.version,
            }
            value = self._serde.serialize(signal, self._signal)
            routed.append(Routed(self._signals, subject_key, value))
        return routed

    def _subject_digests(self, subject: dict[str, Any], contact_id: str) -> Digests:
        """Digests of every normalised identifier (the contact's when it names none)."""
        handle = subject.get("social_handle")
        spelling = (
            subject.get("phone"), subject.get("email"),
            None if handle is None else (handle["platform"], handle["handle"]),
            subject.get("customer_ref"),
        )  # fmt: skip
        known = self._digests.get(spelling)
        if known is None:
            digest = self._pseudonyms.identifier_digest
            known = tuple((i.kind.value, digest(i)) for i in subject_identifiers(subject))
            if len(self._digests) >= _MAX_REMEMBERED_SPELLINGS:
                self._digests.clear()
            self._digests[spelling] = known
        if known:
            return known
        contact = Identifier(IdentifierKind.CONTACT, contact_id)
        return ((contact.kind.value, self._pseudonyms.identifier_digest(contact)),)

    def _subject(self, digests: Digests) -> str:
        """The subject of the first known digest, else a new one; links the unknown ones."""
        subjects = self.subjects
        subject = next((subjects[d] for _, d in digests if d in subjects), None)
        if subject is None:
            subject = self._pseudonyms.subject_pseudonym(digests[0][1])
        for _, digest in digests:
            subjects.setdefault(digest, subject)
        return subject

    def _key_of(self, subject: str) -> tuple[str, bytes, FieldCipher]:
        entry = self.vault.get(subject)
        if entry is None:
            key_id = f"k-{os.urandom(16).hex()}"
            data_key = new_data_key()
            wrapped = self._wrapper.wrap(key_id, data_key)
            entry = self.vault[subject] = (key_id, wrapped, FieldCipher(key_id, data_key))
        return entry

    def _pii_paths(self, contract: Contract) -> tuple[PiiPath, ...]:
        paths = self._pii.get(contract.fingerprint)
        if paths is None:
            paths = self._pii[contract.fingerprint] = compile_paths(contract.pii_fields)
        return paths

    def _quarantine_record(
        self, record: dict[str, Any], writer: Contract, subject: str, key_id: str, sealed: bytes
    ) -> bytes:
        envelope = record["envelope"]
        quarantined = {
            "event_id": envelope["event_id"],
            "contact_id": envelope["contact_id"],
            "channel": _CHANNEL_OF[writer.name],
            "kind": record["kind"],
            "occurred_at": envelope["occurred_at"],
            "client": envelope["client"],
            "service": envelope["service"],
            "purpose": envelope["purpose"],
            "reason": "no policy rule matches (client, service, purpose, channel, kind)",
            "policy_version": self._policy.version,
            "subject_pseudonym": subject,
            "key_id": key_id,
            "source_fingerprint": writer.fingerprint_hex,
            "event": sealed,
            "quarantined_at": datetime.now(UTC),
        }
        return self._serde.serialize(quarantined, self._quarantined)


def same_work_tagger_from_spec(
    policy_path: str, pseudonym_key_hex: str, master_key_hex: str, outputs: Mapping[str, str]
) -> SameWorkTagger:
    """A SameWorkTagger from the pieces of a PeerSpec."""
    return SameWorkTagger(
        SchemaCatalog.load(),
        load_policy(policy_path),
        Pseudonymiser(bytes.fromhex(pseudonym_key_hex)),
        bytes.fromhex(master_key_hex),
        outputs,
    )
