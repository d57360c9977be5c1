"""Alembic's entry: migrate the connection the repository hands over
(``config.attributes["connection"]``), inside its transaction."""
from alembic import context

from dffml_archive.repository._schema import metadata

context.configure(
    connection=context.config.attributes["connection"],
    target_metadata=metadata,
    render_as_batch=True,  # SQLite alters tables by copying them
)
with context.begin_transaction():
    context.run_migrations()
