"""Create the ledger tables: subjects, subject index, aliases, key vault, audit log.

Revision ID: 0001
Revises:
Create Date: 2026-11-26

Self-contained on purpose: plain SQLAlchemy types, explicit constraint names that match
the naming convention in streams.ledger.models, nothing imported from the application.
"""

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PSEUDONYM = sa.String(length=128)


def _instant(name: str, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "subjects",
        sa.Column("subject_pseudonym", PSEUDONYM, nullable=False),
        _instant("created_at"),
        _instant("erased_at", nullable=True),
        sa.PrimaryKeyConstraint("subject_pseudonym", name="pk_subjects"),
    )

    op.create_table(
        "subject_identifiers",
        sa.Column("identifier_digest", sa.String(length=128), nullable=False),
        sa.Column("identifier_kind", sa.String(length=16), nullable=False),
        sa.Column("subject_pseudonym", PSEUDONYM, nullable=False),
        _instant("first_seen_at"),
        _instant("last_seen_at"),
        sa.CheckConstraint(
            "identifier_kind IN ('phone', 'email', 'social_handle', 'customer_ref', 'contact')",
            name="ck_subject_identifiers_identifier_kind",
        ),
        sa.ForeignKeyConstraint(
            ["subject_pseudonym"],
            ["subjects.subject_pseudonym"],
            name="fk_subject_identifiers_subject_pseudonym_subjects",
        ),
        sa.PrimaryKeyConstraint("identifier_digest", name="pk_subject_identifiers"),
    )
    op.create_index(
        "ix_subject_identifiers_subject_pseudonym", "subject_identifiers", ["subject_pseudonym"]
    )

    op.create_table(
        "subject_aliases",
        sa.Column("alias_pseudonym", PSEUDONYM, nullable=False),
        sa.Column("canonical_pseudonym", PSEUDONYM, nullable=False),
        _instant("merged_at"),
        sa.ForeignKeyConstraint(
            ["canonical_pseudonym"],
            ["subjects.subject_pseudonym"],
            name="fk_subject_aliases_canonical_pseudonym_subjects",
        ),
        sa.PrimaryKeyConstraint("alias_pseudonym", name="pk_subject_aliases"),
    )
    op.create_index(
        "ix_subject_aliases_canonical_pseudonym", "subject_aliases", ["canonical_pseudonym"]
    )

    op.create_table(
        "subject_keys",
        sa.Column("key_id", sa.String(length=128), nullable=False),
        sa.Column("subject_pseudonym", PSEUDONYM, nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=True),
        sa.Column("algorithm", sa.String(length=32), nullable=False),
        _instant("created_at"),
        _instant("shredded_at", nullable=True),
        sa.CheckConstraint(
            "(wrapped_key IS NULL AND shredded_at IS NOT NULL)"
            " OR (wrapped_key IS NOT NULL AND shredded_at IS NULL)",
            name="ck_subject_keys_shredded_means_no_key",
        ),
        sa.ForeignKeyConstraint(
            ["subject_pseudonym"],
            ["subjects.subject_pseudonym"],
            name="fk_subject_keys_subject_pseudonym_subjects",
        ),
        sa.PrimaryKeyConstraint("key_id", name="pk_subject_keys"),
    )
    op.create_index("ix_subject_keys_subject_pseudonym", "subject_keys", ["subject_pseudonym"])

    op.create_table(
        "audit_log",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        _instant("at"),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("subject_pseudonym", PSEUDONYM, nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("entry_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
        sa.UniqueConstraint("entry_hash", name="uq_audit_log_entry_hash"),
        sa.UniqueConstraint("prev_hash", name="uq_audit_log_prev_hash"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_audit_log_request_id", "audit_log", ["request_id"])
    op.create_index("ix_audit_log_subject_pseudonym", "audit_log", ["subject_pseudonym"])


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_table("subject_keys")
    op.drop_table("subject_aliases")
    op.drop_table("subject_identifiers")
    op.drop_table("subjects")
