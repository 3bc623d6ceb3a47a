"""Indexes for the privacy app's lookups that scanned a whole table (issue 15).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

- holds (target, released_at): the active holds naming a subject, contact or recording,
  read for every erasure; before, every active hold was read.
- request_commands (outcome, escalated_at): the commands a deadline tick looks at
  (unanswered, or failed and not escalated); before, every command ever issued.
- audit_log (action, request_id): an audit action, of one request or of all (the request
  topic's cut looks for dead-letter entries); before, the whole audit log when the
  record's key named no request.

Indexes only: no row is read or changed. Self-contained on purpose, like 0003 and 0004.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = (
    ("ix_holds_target_released_at", "holds", ["target", "released_at"]),
    ("ix_request_commands_outcome_escalated_at", "request_commands", ["outcome", "escalated_at"]),
    ("ix_audit_log_action_request_id", "audit_log", ["action", "request_id"]),
)


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
