"""Which refusals by Kafka are about one record rather than the broker's health.

A record the broker refuses for its size, its form or a topic policy is refused again on
every retry: retrying it blocks whatever waits behind it. Workers send such a record's
input to the dead letters (with the error's name) and go on. Every other failure (the
broker away, a request timed out, a leader moving) is retried as it is.
"""

from __future__ import annotations

from collections.abc import Iterable

from confluent_kafka import KafkaError

RECORD_ERRORS = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.INVALID_MSG_SIZE,
        KafkaError.INVALID_MSG,
        KafkaError.INVALID_RECORD,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.POLICY_VIOLATION,
        KafkaError.INVALID_TIMESTAMP,
        KafkaError.UNSUPPORTED_FOR_MESSAGE_FORMAT,
    }
)
RECORD_ERROR_NAMES = frozenset(KafkaError(code).name() for code in RECORD_ERRORS)
SIZE_ERROR_NAMES = frozenset(
    KafkaError(code).name()
    for code in (
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.INVALID_MSG_SIZE,
        KafkaError.RECORD_LIST_TOO_LARGE,
    )
)


def about_the_records(error_names: Iterable[str]) -> bool:
    """True when every refusal named is about a record itself (never for none)."""
    names = set(error_names)
    return bool(names) and names <= RECORD_ERROR_NAMES
