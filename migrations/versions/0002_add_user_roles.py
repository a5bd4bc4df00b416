"""Add users.roles, a JSON list of role names.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    # The server default fills existing rows; batch mode keeps SQLite happy too.
    with op.batch_alter_table("users") as batch:
        batch.add_column(
            sa.Column("roles", sa.JSON(), server_default=sa.text("'[]'"), nullable=False)
        )


def downgrade():
    with op.batch_alter_table("users") as batch:
        batch.drop_column("roles")
