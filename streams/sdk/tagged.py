"""Reading tagged events (`contact.ores.v1`, `contact.comnexio.v1`, `contact.restricted.v1`)
whatever contract version they were written with.

`TaggedContactEvent` v2 adds `governance.excluded_purposes`: the derived purposes (such as
`reporting`) the event must not be used for because its subject objected to them (GDPR
Art. 21). Events written before it are v1. `read_tagged` reads every version as the
newest one, so a consumer needs no version branch: a v1 event excludes no purpose. A
derived processing (the reporting app) skips an event whose `excluded_purposes` names it.
"""

from __future__ import annotations

from typing import Any, Final

from schemas.serde import AvroSerde

TAGGED_CONTRACT: Final = "TaggedContactEvent"


def read_tagged(serde: AvroSerde, value: bytes) -> dict[str, Any]:
    """The tagged event in `value` (any version), in the shape of the newest version."""
    _, record = serde.deserialize(value, TAGGED_CONTRACT)
    return record
