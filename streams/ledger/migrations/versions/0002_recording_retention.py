"""Recording retention: recordings with their schedule, legal holds, recording history.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

Self-contained on purpose: plain SQLAlchemy types, explicit constraint names that match
the naming convention in streams.ledger.models, nothing imported from the application.
"""

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RECORD_ID = sa.String(length=200)
ACTOR = sa.String(length=128)


def _instant(name: str, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "recordings",
        sa.Column("recording_id", RECORD_ID, nullable=False),
        sa.Column("contact_id", RECORD_ID, nullable=False),
        sa.Column("subject_pseudonym", sa.String(length=128), nullable=False),
        sa.Column("controller", sa.String(length=16), nullable=False),
        sa.Column("purpose", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("recording_kind", sa.String(length=32), nullable=False),
        sa.Column("media_ref", sa.String(length=1000), nullable=True),
        _instant("ended_at"),
        _instant("retain_until"),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("policy_version", sa.String(length=64), nullable=False),
        _instant("registered_at"),
        _instant("updated_at"),
        _instant("expired_at", nullable=True),
        sa.CheckConstraint("controller IN ('ORES', 'COMNEXIO')", name="ck_recordings_controller"),
        sa.CheckConstraint(
            "recording_kind IN ('call_audio', 'chat_transcript', 'email_body')",
            name="ck_recordings_recording_kind",
        ),
        sa.CheckConstraint("state IN ('standard', 'held', 'expired')", name="ck_recordings_state"),
        sa.CheckConstraint(
            "(state = 'expired') = (expired_at IS NOT NULL)",
            name="ck_recordings_expired_means_expired_at",
        ),
        sa.PrimaryKeyConstraint("recording_id", name="pk_recordings"),
    )
    op.create_index("ix_recordings_contact_id", "recordings", ["contact_id"])
    op.create_index("ix_recordings_subject_pseudonym", "recordings", ["subject_pseudonym"])
    op.create_index("ix_recordings_state_retain_until", "recordings", ["state", "retain_until"])

    op.create_table(
        "holds",
        sa.Column("hold_id", RECORD_ID, nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("target", RECORD_ID, nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("reference", sa.String(length=200), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("placed_by", ACTOR, nullable=False),
        _instant("placed_at"),
        _instant("released_at", nullable=True),
        sa.Column("released_by", ACTOR, nullable=True),
        sa.Column("release_reason", sa.String(length=200), nullable=True),
        sa.CheckConstraint("scope IN ('recording', 'contact', 'subject')", name="ck_holds_scope"),
        sa.CheckConstraint(
            "reason IN ('complaint', 'fraud', 'dispute', 'litigation', 'authority_request')",
            name="ck_holds_reason",
        ),
        sa.CheckConstraint(
            "(released_at IS NULL AND released_by IS NULL AND release_reason IS NULL)"
            " OR (released_at IS NOT NULL AND released_by IS NOT NULL"
            " AND release_reason IS NOT NULL)",
            name="ck_holds_release_is_complete",
        ),
        sa.PrimaryKeyConstraint("hold_id", name="pk_holds"),
    )
    op.create_index("ix_holds_scope_target", "holds", ["scope", "target"])
    op.create_index("ix_holds_released_at", "holds", ["released_at"])

    op.create_table(
        "recording_history",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("recording_id", RECORD_ID, nullable=False),
        _instant("at"),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("hold_id", RECORD_ID, nullable=True),
        _instant("retain_until", nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.CheckConstraint(
            "action IN ('registered', 'held', 'released', 'expired', 'restricted')",
            name="ck_recording_history_action",
        ),
        sa.ForeignKeyConstraint(
            ["recording_id"],
            ["recordings.recording_id"],
            name="fk_recording_history_recording_id_recordings",
        ),
        sa.ForeignKeyConstraint(
            ["hold_id"], ["holds.hold_id"], name="fk_recording_history_hold_id_holds"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_recording_history"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_recording_history_recording_id", "recording_history", ["recording_id"])


def downgrade() -> None:
    op.drop_table("recording_history")
    op.drop_table("holds")
    op.drop_table("recordings")
