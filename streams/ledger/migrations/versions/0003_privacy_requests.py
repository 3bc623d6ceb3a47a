"""Privacy requests: requests, identifier digests, downstream commands, request history.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03

Self-contained on purpose: plain SQLAlchemy types, explicit constraint names that match
the naming convention in streams.ledger.models, nothing imported from the application.
"""

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REQUEST_ID = sa.String(length=128)
ACTOR = sa.String(length=128)
REASON = sa.String(length=500)
REQUEST_TYPES = ("erasure", "restriction", "lift_restriction", "objection",
                 "consent_withdrawal", "access", "portability", "rectification")
STATES = ("identity_unverified", "received", "resolved", "awaiting_controller", "executing",
          "awaiting_acks", "completed", "refused", "rejected")
DECISION_SOURCES = ("controller", "standing", "absolute_right", "identity_not_proven")
COMMANDS = ("erase", "restrict", "lift_restriction", "rectify", "suppress", "stop_purpose")
OUTCOMES = ("done", "not_found", "retained_under_hold", "failed")
IDENTIFIER_KINDS = ("phone", "email", "social_handle", "customer_ref", "contact")


def _instant(name: str, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _check(sql: str, name: str) -> sa.CheckConstraint:
    """A CHECK with its final name: op.f stops the naming convention applying twice."""
    return sa.CheckConstraint(sql, name=op.f(name))


def _one_of(table: str, column: str, values: Sequence[str]) -> sa.CheckConstraint:
    listed = ", ".join(f"'{v}'" for v in values)
    return _check(f"{column} IN ({listed})", f"ck_{table}_{column}")


def _request_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["request_id"],
        ["privacy_requests.request_id"],
        name=f"fk_{table}_request_id_privacy_requests",
    )


def upgrade() -> None:
    op.create_table(
        "privacy_requests",
        sa.Column("request_id", REQUEST_ID, nullable=False),
        sa.Column("request_type", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        _instant("received_at"),
        sa.Column("submitted_by", ACTOR, nullable=False),
        _instant("due_at"),
        _instant("updated_at"),
        sa.Column("purpose", sa.String(length=64), nullable=True),
        _instant("verified_at", nullable=True),
        sa.Column("verified_by", sa.String(length=64), nullable=True),
        sa.Column("subject_pseudonyms", sa.JSON(), nullable=False),
        sa.Column("controllers", sa.JSON(), nullable=False),
        _instant("resolved_at", nullable=True),
        _instant("forwarded_at", nullable=True),
        sa.Column("decision", sa.String(length=16), nullable=True),
        sa.Column("decision_source", sa.String(length=32), nullable=True),
        sa.Column("decision_reason", REASON, nullable=True),
        sa.Column("decided_by", ACTOR, nullable=True),
        _instant("decided_at", nullable=True),
        sa.Column("extension_months", sa.Integer(), nullable=False),
        _instant("extended_until", nullable=True),
        sa.Column("extension_reason", REASON, nullable=True),
        _instant("escalated_at", nullable=True),
        _instant("closed_at", nullable=True),
        _one_of("privacy_requests", "request_type", REQUEST_TYPES),
        _one_of("privacy_requests", "state", STATES),
        _one_of("privacy_requests", "decision", ("execute", "refuse")),
        _one_of("privacy_requests", "decision_source", DECISION_SOURCES),
        _check("(verified_at IS NULL) = (verified_by IS NULL)", "ck_privacy_requests_verified"),
        _check(
            "(decision IS NULL) = (decision_source IS NULL)"
            " AND (decision IS NULL) = (decided_at IS NULL)"
            " AND (decision IS NULL OR decision <> 'refuse' OR decision_reason IS NOT NULL)",
            "ck_privacy_requests_decision_is_complete",
        ),
        _check(
            "extension_months BETWEEN 0 AND 2"
            " AND (extension_months = 0) = (extended_until IS NULL)"
            " AND (extension_months = 0) = (extension_reason IS NULL)",
            "ck_privacy_requests_extension_has_reason",
        ),
        _check(
            "(state IN ('completed', 'refused', 'rejected')) = (closed_at IS NOT NULL)",
            "ck_privacy_requests_closed_means_closed_at",
        ),
        sa.PrimaryKeyConstraint("request_id", name="pk_privacy_requests"),
    )
    op.create_index("ix_privacy_requests_state_due_at", "privacy_requests", ["state", "due_at"])

    op.create_table(
        "request_identifiers",
        sa.Column("request_id", REQUEST_ID, nullable=False),
        sa.Column("identifier_digest", sa.String(length=128), nullable=False),
        sa.Column("identifier_kind", sa.String(length=16), nullable=False),
        _one_of("request_identifiers", "identifier_kind", IDENTIFIER_KINDS),
        _request_fk("request_identifiers"),
        sa.PrimaryKeyConstraint(
            "request_id", "identifier_digest", name="pk_request_identifiers"
        ),
    )
    op.create_index(
        "ix_request_identifiers_identifier_digest", "request_identifiers", ["identifier_digest"]
    )

    op.create_table(
        "request_commands",
        sa.Column("command_id", sa.String(length=64), nullable=False),
        sa.Column("request_id", REQUEST_ID, nullable=False),
        sa.Column("consumer", sa.String(length=64), nullable=False),
        sa.Column("command", sa.String(length=32), nullable=False),
        sa.Column("subject_pseudonym", sa.String(length=128), nullable=False),
        sa.Column("controller", sa.String(length=16), nullable=False),
        _instant("issued_at"),
        _instant("answer_by"),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        sa.Column("reason", REASON, nullable=True),
        _instant("answered_at", nullable=True),
        _instant("escalated_at", nullable=True),
        _one_of("request_commands", "command", COMMANDS),
        _one_of("request_commands", "controller", ("ORES", "COMNEXIO")),
        _one_of("request_commands", "outcome", OUTCOMES),
        _check("attempt >= 1", "ck_request_commands_attempt_positive"),
        _check(
            "(outcome IS NULL) = (answered_at IS NULL)"
            " AND (outcome IS NULL OR outcome <> 'failed' OR reason IS NOT NULL)",
            "ck_request_commands_answer_is_complete",
        ),
        _request_fk("request_commands"),
        sa.PrimaryKeyConstraint("command_id", name="pk_request_commands"),
    )
    op.create_index("ix_request_commands_request_id", "request_commands", ["request_id"])
    op.create_index("ix_request_commands_answer_by", "request_commands", ["answer_by"])

    op.create_table(
        "request_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("request_id", REQUEST_ID, nullable=False),
        _instant("at"),
        sa.Column("actor", ACTOR, nullable=False),
        sa.Column("event", sa.String(length=64), nullable=False),
        sa.Column("from_state", sa.String(length=32), nullable=True),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("command_id", sa.String(length=64), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        _request_fk("request_events"),
        sa.ForeignKeyConstraint(
            ["command_id"],
            ["request_commands.command_id"],
            name="fk_request_events_command_id_request_commands",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_request_events"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_request_events_request_id", "request_events", ["request_id"])


def downgrade() -> None:
    op.drop_table("request_events")
    op.drop_table("request_commands")
    op.drop_table("request_identifiers")
    op.drop_table("privacy_requests")
