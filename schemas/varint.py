"""Avro's zigzag varints and timestamp-millis, written and read in one place.

The generated codecs (`schemas.serde`), the router's output templates and its PII span
finder all write or walk these bytes, and must agree with fastavro to the bit.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_LONG_MIN: Final = -(1 << 63)
_LONG_MAX: Final = (1 << 63) - 1


class VarintError(ValueError):
    """A number outside Avro's long, or bytes that are not one varint of it."""


def zigzag_varint(number: int) -> bytes:
    """The Avro varint of a signed 64-bit `number` (zigzag, 7 bits a byte, low first)."""
    if not _LONG_MIN <= number <= _LONG_MAX:
        raise VarintError("outside Avro's long range")
    value = (number << 1) ^ (number >> 63)
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def read_varint_tail(
    data: bytes, position: int, first: int, *, canonical: bool = False
) -> tuple[int, int]:
    """(unsigned value, next position) of a varint whose first byte `first` (already read,
    before `position`) said more bytes follow. IndexError when the data ends first;
    VarintError past 64 bits, or with `canonical` a trailing zero group (not minimal)."""
    value = first & 0x7F
    byte = data[position]
    if not byte & 0x80:  # two bytes in all: most lengths and small numbers
        if canonical and byte == 0:
            raise VarintError("not the minimal encoding")
        return value | (byte << 7), position + 1
    shift = 7
    while True:
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if canonical and byte == 0:
                raise VarintError("not the minimal encoding")
            break
        shift += 7
        if shift > 63:
            raise VarintError("longer than a 64-bit varint")
    if value >> 64:
        raise VarintError("longer than a 64-bit varint")
    return value, position


def millis_since_epoch(value: datetime) -> int:
    """An aware datetime as Avro timestamp-millis counts it (fastavro truncates to ms)."""
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise VarintError("timestamp-millis needs an aware datetime")
    delta = value - EPOCH
    return (delta.days * 86400 + delta.seconds) * 1000 + int(delta.microseconds / 1000)
