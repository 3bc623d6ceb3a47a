"""The controllers whose part of a request was carried out, as a field of the request.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

It was spelled before as comma-joined codes in the details of the request's `executed`
events; the upgrade fills the new column from them, so requests in flight keep their
progress. Self-contained on purpose, like 0003 and 0004.
"""

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # NOT NULL with a default in one ADD COLUMN: SQLite cannot alter a column in place, and
    # rebuilding the table (batch mode) is refused while events reference its rows
    op.add_column(
        "privacy_requests",
        sa.Column("executed_for", sa.JSON(), nullable=False, server_default=sa.text("'[]'")),
    )
    bind = op.get_bind()
    done: dict[str, set[str]] = {}
    rows = bind.execute(
        sa.text("SELECT request_id, details FROM request_events WHERE event = 'executed'")
    )
    for request_id, details in rows:
        if isinstance(details, str):
            details = json.loads(details)
        codes = str((details or {}).get("controllers", ""))
        done.setdefault(request_id, set()).update(c for c in codes.split(",") if c)
    requests = sa.table("privacy_requests", sa.column("request_id"),
                        sa.column("executed_for", sa.JSON()))  # fmt: skip
    for request_id, controllers in done.items():
        bind.execute(
            requests.update()
            .where(requests.c.request_id == request_id)
            .values(executed_for=sorted(controllers))
        )


def downgrade() -> None:
    with op.batch_alter_table("privacy_requests") as batch:
        batch.drop_column("executed_for")
