"""Blob claims: what saves are about to reference, so that gc spares it.

Revision ID: 0002_blob_claims
Revises: 0001_initial
"""
import time

import sqlalchemy as sa
from alembic import op

revision = "0002_blob_claims"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade():
    blobs = op.create_table(
        "blobs",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("claimed", sa.Float, nullable=False),
    )
    # Every blob referenced so far is claimed now (sizes are unknown here
    # for members: 0 until the next save claims them again).
    connection = op.get_bind()
    now = time.time()
    referenced = {row[0] for row in connection.execute(sa.text("SELECT blob FROM image_blobs"))}
    referenced |= {row[0] for row in connection.execute(sa.text("SELECT blob FROM attachments"))}
    if referenced:
        op.bulk_insert(blobs, [{"digest": d, "size": 0, "claimed": now} for d in sorted(referenced)])


def downgrade():
    op.drop_table("blobs")
