"""Bare tagging: the governance work every benchmark peer does per event, and nothing more.

Per raw event: Avro-decode it; normalise its first identifier (phone, then e-mail, then
social handle, then customer reference); derive the subject pseudonym by HMAC; attribute the
controller with the policy; encode a TaggedContactEvent whose `event` is the raw bytes as
received (no encryption: `key_id` is "none", `restricted` false) and route it to the ORES or
COMNEXIO topic keyed by pseudonym. No rule, or no usable identifier: the raw bytes go to the
quarantine topic keyed by contact id. A payload that does not decode raises (the bench input
is all valid). No subject index, no state table, no crypto: that is the router's extra work.

Imports only schemas, processors and PyYAML: the Quix peer runs it in another virtualenv.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from processors.identity import (
    Identifier,
    InvalidIdentifier,
    customer_reference,
    normalise_email,
    normalise_phone,
    qualify_handle,
)
from processors.policy import Decisions, Policy, parse_policy
from processors.pseudonym import Pseudonymiser
from schemas.catalog import CHANNEL_CONTRACTS, SchemaCatalog
from schemas.serde import AvroSerde
from streams.dev.bench.spec import COMNEXIO, ORES, QUARANTINE

UNENCRYPTED_KEY_ID = "none"
_CHANNEL_OF = {name: channel for channel, name in CHANNEL_CONTRACTS.items()}


@dataclass(frozen=True, slots=True)
class Routed:
    """One output record: where it goes (a topic name), its key and its value."""

    topic: str
    key: bytes
    value: bytes


def load_policy(path: str | Path) -> Policy:
    """The validated policy document at `path` (normally infra/policy.yaml)."""
    return parse_policy(yaml.safe_load(Path(path).read_text(encoding="utf-8")))


def first_identifier(subject: Mapping[str, Any]) -> Identifier | None:
    """The normalised first identifier of a decoded subject, None when none is usable."""
    try:
        if subject.get("phone"):
            return normalise_phone(subject["phone"])
        if subject.get("email"):
            return normalise_email(subject["email"])
        handle = subject.get("social_handle")
        if handle:
            return qualify_handle(handle["platform"], handle["handle"])
        if subject.get("customer_ref"):
            return customer_reference(subject["customer_ref"])
    except InvalidIdentifier:
        return None
    return None


class BareTagger:
    """`tag(raw) -> Routed`; built once per peer process, then called per event."""

    __slots__ = (
        "_comnexio",
        "_decisions",
        "_ores",
        "_pseudonyms",
        "_quarantine",
        "_serde",
        "_tagged",
    )

    def __init__(
        self,
        catalog: SchemaCatalog,
        policy: Policy,
        pseudonyms: Pseudonymiser,
        outputs: Mapping[str, str],
    ) -> None:
        self._serde = AvroSerde(catalog)
        self._tagged = catalog.latest("TaggedContactEvent")
        self._decisions = Decisions(policy)
        self._pseudonyms = pseudonyms
        self._ores = outputs[ORES]
        self._comnexio = outputs[COMNEXIO]
        self._quarantine = outputs[QUARANTINE]

    def tag(self, raw: bytes) -> Routed:
        writer, record = self._serde.deserialize(raw)
        envelope = record["envelope"]
        channel = _CHANNEL_OF[writer.name]
        kind = record["kind"]
        decision, _ = self._decisions(
            (envelope["client"], envelope["service"], envelope["purpose"], channel, kind)
        )
        identifier = first_identifier(envelope["subject"])
        if decision is None or identifier is None:
            return Routed(self._quarantine, envelope["contact_id"].encode(), raw)
        pseudonym = self._pseudonyms.subject_pseudonym(
            self._pseudonyms.identifier_digest(identifier)
        )
        tagged = {
            "event_id": envelope["event_id"],
            "contact_id": envelope["contact_id"],
            "channel": channel,
            "kind": kind,
            "occurred_at": envelope["occurred_at"],
            "governance": {
                "controller": decision.controller,
                "processor": decision.processor,
                "purpose": decision.purpose,
                "legal_basis": decision.legal_basis,
                "subject_pseudonym": pseudonym,
                "policy_version": decision.policy_version,
                "restricted": False,
                "retention_class": decision.retention_class,
                "excluded_purposes": [],
            },
            "key_id": UNENCRYPTED_KEY_ID,
            "source_fingerprint": writer.fingerprint_hex,
            "event": raw,
            "traceparent": None,
        }
        topic = self._ores if decision.controller == "ORES" else self._comnexio
        return Routed(topic, pseudonym.encode(), self._serde.serialize(tagged, self._tagged))


def tagger_from_spec(
    policy_path: str, pseudonym_key_hex: str, outputs: Mapping[str, str]
) -> BareTagger:
    """A BareTagger from the pieces of a PeerSpec."""
    return BareTagger(
        SchemaCatalog.load(),
        load_policy(policy_path),
        Pseudonymiser(bytes.fromhex(pseudonym_key_hex)),
        outputs,
    )
