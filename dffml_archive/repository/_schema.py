"""The repository's tables (SQLAlchemy Core): one schema for SQLite and PostgreSQL.

Changed only through a new alembic migration in ``_migrations/versions``
(tests compare the two).  Times are UNIX seconds (float): portable, and
sortable as numbers in both databases.

* ``repositories``: one per model name.  ``next_version`` is the version
  counter, incremented in the save transaction (never MAX+1 outside it).
* ``images``: content, shared by versions: the canonical manifest bytes,
  keyed by their sha256 (the image's identity).
* ``image_blobs``: which blobs (member sha256) an image needs, for gc.
* ``versions``: the immutable history; ``metadata`` is the user's part.
* ``attachments``: files saved beside a version (a blob each).
* ``tags``: user tags (``latest`` is computed, never stored).
* ``events``: the log of saves, tag moves and deletions.
* ``blobs``: every blob a save has claimed, with when it was last claimed:
  a save claims (commits) its blobs before it checks that the store holds
  them, and gc deletes a blob only while holding its row, unreferenced and
  unclaimed for the grace period; so gc on one host never removes a blob a
  save on another host is about to reference.
"""
from sqlalchemy import (
    JSON, BigInteger, Column, Float, ForeignKey, Index, Integer, LargeBinary, MetaData, String,
    Table, Text, UniqueConstraint,
)

#: The alembic revision this code reads and writes (its migration file's).
SCHEMA_REVISION = "0002_blob_claims"

metadata = MetaData()

repositories = Table(
    "repositories", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(201), nullable=False, unique=True),
    Column("namespace", String(100), nullable=False),
    Column("created", Float, nullable=False),
    Column("next_version", Integer, nullable=False),
)

images = Table(
    "images", metadata,
    Column("digest", String(64), primary_key=True),
    Column("manifest", LargeBinary, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("created", Float, nullable=False),
    #: The manifest's model section (entry point, config, versions), apart
    #: from the member list, so that find reads no member lists.
    Column("model", JSON, nullable=True),
)

image_blobs = Table(
    "image_blobs", metadata,
    Column("image", String(64), ForeignKey("images.digest", ondelete="CASCADE"),
           primary_key=True),
    Column("blob", String(64), primary_key=True),
    Index("image_blobs_blob", "blob"),
)

versions = Table(
    "versions", metadata,
    Column("id", Integer, primary_key=True),
    Column("repository_id", Integer, ForeignKey("repositories.id", ondelete="CASCADE"),
           nullable=False),
    Column("version", Integer, nullable=False),
    Column("image", String(64), ForeignKey("images.digest"), nullable=False),
    Column("comment", Text, nullable=False),
    Column("created", Float, nullable=False),
    Column("user", String(200), nullable=False),
    Column("host", String(255), nullable=False),
    Column("entrypoint", String(200), nullable=True),
    Column("metadata", JSON, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("new_bytes", BigInteger, nullable=False),
    UniqueConstraint("repository_id", "version", name="versions_repository_version"),
    Index("versions_image", "image"),
    Index("versions_entrypoint", "entrypoint"),
)

attachments = Table(
    "attachments", metadata,
    Column("version_id", Integer, ForeignKey("versions.id", ondelete="CASCADE"),
           primary_key=True),
    Column("name", String(255), primary_key=True),
    Column("blob", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Index("attachments_blob", "blob"),
)

tags = Table(
    "tags", metadata,
    Column("repository_id", Integer, ForeignKey("repositories.id", ondelete="CASCADE"),
           primary_key=True),
    Column("tag", String(100), primary_key=True),
    Column("version_id", Integer, ForeignKey("versions.id", ondelete="CASCADE"),
           nullable=False),
    Index("tags_version", "version_id"),
)

events = Table(
    "events", metadata,
    Column("id", Integer, primary_key=True),
    Column("repository_id", Integer, ForeignKey("repositories.id", ondelete="CASCADE"),
           nullable=False),
    Column("time", Float, nullable=False),
    Column("user", String(200), nullable=False),
    Column("action", String(20), nullable=False),  # save, tag, untag, delete
    Column("version", Integer, nullable=True),
    Column("tag", String(100), nullable=True),
    Column("previous_version", Integer, nullable=True),
    Index("events_repository", "repository_id", "id"),
)

blobs = Table(
    "blobs", metadata,
    Column("digest", String(64), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("claimed", Float, nullable=False),
)
