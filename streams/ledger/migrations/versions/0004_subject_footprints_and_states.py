"""Where each subject has data (router footprints) and each subject's privacy state.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26

Self-contained on purpose, like 0003: plain SQLAlchemy types and final constraint names.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PSEUDONYM = sa.String(length=128)


def upgrade() -> None:
    op.create_table(
        "subject_footprints",
        sa.Column("subject_pseudonym", PSEUDONYM, nullable=False),
        sa.Column("controller", sa.String(length=16), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "controller IN ('ORES', 'COMNEXIO')", name=op.f("ck_subject_footprints_controller")
        ),
        sa.PrimaryKeyConstraint(
            "subject_pseudonym", "controller", "channel", name=op.f("pk_subject_footprints")
        ),
    )
    op.create_table(
        "subject_privacy_states",
        sa.Column("subject_pseudonym", PSEUDONYM, nullable=False),
        sa.Column("restricted", sa.Boolean(), nullable=False),
        sa.Column("objected_purposes", sa.JSON(), nullable=False),
        sa.Column("suppressed_from_surveys", sa.Boolean(), nullable=False),
        sa.Column("erased", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("subject_pseudonym", name=op.f("pk_subject_privacy_states")),
    )


def downgrade() -> None:
    op.drop_table("subject_privacy_states")
    op.drop_table("subject_footprints")
