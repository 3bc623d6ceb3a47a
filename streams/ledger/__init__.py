"""The ledger: contactflow's system of record (subject index, key vault, audit log).

Build it in the composition root: `engine = create_ledger_engine(url)`,
`upgrade(url)`, `sessions = session_factory(engine)`; then wrap each unit of work's
Session in `SubjectIndex`, `KeyVault` and `AuditLog`. Nothing connects at import time.
"""

from streams.ledger.audit import AuditLog, verify_chain
from streams.ledger.columns import NaiveDatetimeError, UTCDateTime
from streams.ledger.engine import create_ledger_engine, session_factory
from streams.ledger.errors import (
    AppendOnlyViolationError,
    DuplicateKeyError,
    IdentifierKindMismatchError,
    InvalidIdentifierError,
    LedgerError,
    PseudonymCollisionError,
    SubjectErasedError,
    UnknownKeyError,
    UnknownSubjectError,
)
from streams.ledger.keys import KeyVault, reclaim_shredded_storage
from streams.ledger.migrate import (
    alembic_config,
    current_revision,
    downgrade,
    head_revision,
    upgrade,
)
from streams.ledger.records import (
    GENESIS_HASH,
    AuditRecord,
    ChainProblem,
    ChainReport,
    IdentifierKind,
    KeyRecord,
)
from streams.ledger.subjects import SubjectIndex

__all__ = [
    "GENESIS_HASH",
    "AppendOnlyViolationError",
    "AuditLog",
    "AuditRecord",
    "ChainProblem",
    "ChainReport",
    "DuplicateKeyError",
    "IdentifierKind",
    "IdentifierKindMismatchError",
    "InvalidIdentifierError",
    "KeyRecord",
    "KeyVault",
    "LedgerError",
    "NaiveDatetimeError",
    "PseudonymCollisionError",
    "SubjectErasedError",
    "SubjectIndex",
    "UTCDateTime",
    "UnknownKeyError",
    "UnknownSubjectError",
    "alembic_config",
    "create_ledger_engine",
    "current_revision",
    "downgrade",
    "head_revision",
    "reclaim_shredded_storage",
    "session_factory",
    "upgrade",
    "verify_chain",
]
