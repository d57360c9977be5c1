"""The first schema: repositories, images, versions, attachments, tags, events.

Revision ID: 0001_initial
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None


def _repository_column():
    return sa.Column(
        "repository_id", sa.Integer, sa.ForeignKey("repositories.id", ondelete="CASCADE"),
        nullable=False,
    )


def upgrade():
    op.create_table(
        "repositories",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(201), nullable=False, unique=True),
        sa.Column("namespace", sa.String(100), nullable=False),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("next_version", sa.Integer, nullable=False),
    )
    op.create_table(
        "images",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("manifest", sa.LargeBinary, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("model", sa.JSON, nullable=True),
    )
    op.create_table(
        "image_blobs",
        sa.Column("image", sa.String(64), sa.ForeignKey("images.digest", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("blob", sa.String(64), primary_key=True),
    )
    op.create_index("image_blobs_blob", "image_blobs", ["blob"])
    op.create_table(
        "versions",
        sa.Column("id", sa.Integer, primary_key=True),
        _repository_column(),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("image", sa.String(64), sa.ForeignKey("images.digest"), nullable=False),
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("user", sa.String(200), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("entrypoint", sa.String(200), nullable=True),
        sa.Column("metadata", sa.JSON, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("new_bytes", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("repository_id", "version", name="versions_repository_version"),
    )
    op.create_index("versions_image", "versions", ["image"])
    op.create_index("versions_entrypoint", "versions", ["entrypoint"])
    op.create_table(
        "attachments",
        sa.Column("version_id", sa.Integer, sa.ForeignKey("versions.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("blob", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
    )
    op.create_index("attachments_blob", "attachments", ["blob"])
    op.create_table(
        "tags",
        sa.Column("repository_id", sa.Integer,
                  sa.ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("tag", sa.String(100), primary_key=True),
        sa.Column("version_id", sa.Integer, sa.ForeignKey("versions.id", ondelete="CASCADE"),
                  nullable=False),
    )
    op.create_index("tags_version", "tags", ["version_id"])
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True),
        _repository_column(),
        sa.Column("time", sa.Float, nullable=False),
        sa.Column("user", sa.String(200), nullable=False),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("version", sa.Integer, nullable=True),
        sa.Column("tag", sa.String(100), nullable=True),
        sa.Column("previous_version", sa.Integer, nullable=True),
    )
    op.create_index("events_repository", "events", ["repository_id", "id"])


def downgrade():
    for table in ("events", "tags", "attachments", "versions", "image_blobs", "images",
                  "repositories"):
        op.drop_table(table)
