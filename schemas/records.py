"""Typed builders of the records contactflow writes on more than one path, one per contract.

Each returns the dict the serde encodes against the contract's latest version; the keyword
arguments are that contract's fields, so a missing or misspelt field fails where the record
is built (a TypeError naming it), not later as an Avro error on the wire.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any


def dead_letter(
    *,
    source_topic: str,
    source_partition: int,
    source_offset: int,
    stage: str,
    reason_code: str,
    reason: str,
    original_key: bytes | None,
    original_value: bytes | None,
    failed_at: datetime,
    original_headers: Mapping[str, bytes] | None = None,
    original_size: int | None = None,
    original_sha256: str | None = None,
) -> dict[str, Any]:
    """A `DeadLetter`: the original bytes with the reason, or, when they do not fit, a
    reference (no bytes; their size and SHA-256)."""
    return {
        "source_topic": source_topic,
        "source_partition": source_partition,
        "source_offset": source_offset,
        "stage": stage,
        "reason_code": reason_code,
        "reason": reason,
        "original_key": original_key,
        "original_value": original_value,
        "original_headers": dict(original_headers or {}),
        "original_size": original_size,
        "original_sha256": original_sha256,
        "failed_at": failed_at,
    }


def dead_letter_key(source_topic: str, source_partition: int, source_offset: int) -> bytes:
    """Where the parked record came from: one dead letter per input position."""
    return f"{source_topic}:{source_partition}:{source_offset}".encode()


def recording_retention(
    *,
    recording_id: str,
    contact_id: str,
    channel: str,
    recording_kind: str,
    media_ref: str | None,
    controller: str,
    purpose: str,
    subject_pseudonym: str,
    ended_at: datetime,
    retain_until: datetime,
    policy_version: str,
    hold_reasons: Iterable[str] = (),
) -> dict[str, Any]:
    """A `RecordingRetention`: `held` when it has hold reasons, `standard` otherwise."""
    reasons = sorted(hold_reasons)
    return {
        "recording_id": recording_id,
        "contact_id": contact_id,
        "channel": channel,
        "recording_kind": recording_kind,
        "media_ref": media_ref,
        "controller": controller,
        "purpose": purpose,
        "subject_pseudonym": subject_pseudonym,
        "ended_at": ended_at,
        "retain_until": retain_until,
        "state": "held" if reasons else "standard",
        "hold_reasons": reasons,
        "policy_version": policy_version,
    }


def subject_state(
    *,
    subject_pseudonym: str,
    restricted: bool,
    objected_purposes: Iterable[str],
    erased: bool,
    suppressed_from_surveys: bool,
    updated_at: datetime,
    request_id: str | None,
) -> dict[str, Any]:
    """A `SubjectState` as published on the compacted subject-state topic."""
    return {
        "subject_pseudonym": subject_pseudonym,
        "restricted": restricted,
        "objected_purposes": sorted(objected_purposes),
        "erased": erased,
        "suppressed_from_surveys": suppressed_from_surveys,
        "updated_at": updated_at,
        "request_id": request_id,
    }
