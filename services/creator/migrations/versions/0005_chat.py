"""Chat widgets, conversations and messages.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "creator"


def _now(name: str) -> sa.Column:  # type: ignore[type-arg]  # a column of any type
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now())


def upgrade() -> None:
    op.create_table(
        "chat_widgets",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("public_key", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("allowed_origins", postgresql.ARRAY(sa.String(300)), nullable=False),
        sa.Column("greeting", sa.Text(), nullable=False),
        sa.Column("knowledge", postgresql.JSONB(), nullable=False),
        sa.Column("voice", postgresql.JSONB(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("visitor_hourly_limit", sa.Integer(), nullable=False),
        sa.Column("widget_daily_limit", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        _now("created_at"),
        _now("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_chat_widgets"),
        sa.UniqueConstraint("public_key", name="uq_chat_widgets_public_key"),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_chat_widgets_tenant", "chat_widgets", ["tenant_id", "created_at"], schema=SCHEMA
    )
    op.create_table(
        "conversations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("widget_id", sa.Uuid(), nullable=False),
        sa.Column("visitor", sa.String(120), nullable=False),
        _now("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_conversations"),
        sa.ForeignKeyConstraint(
            ["widget_id"],
            [f"{SCHEMA}.chat_widgets.id"],
            name="fk_conversations_widget_id_chat_widgets",
        ),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_conversations_widget", "conversations", ["widget_id", "created_at"], schema=SCHEMA
    )
    op.create_table(
        "chat_messages",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("widget_id", sa.Uuid(), nullable=False),
        sa.Column("conversation_id", sa.Uuid(), nullable=False),
        sa.Column("visitor", sa.String(120), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        _now("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_chat_messages"),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            [f"{SCHEMA}.conversations.id"],
            name="fk_chat_messages_conversation_id_conversations",
        ),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_chat_messages_conversation", "chat_messages", ["conversation_id", "id"], schema=SCHEMA
    )
    op.create_index(
        "ix_chat_messages_widget_time", "chat_messages", ["widget_id", "created_at"], schema=SCHEMA
    )
    op.create_index(
        "ix_chat_messages_visitor_time", "chat_messages", ["visitor", "created_at"], schema=SCHEMA
    )


def downgrade() -> None:
    op.drop_table("chat_messages", schema=SCHEMA)
    op.drop_table("conversations", schema=SCHEMA)
    op.drop_table("chat_widgets", schema=SCHEMA)
