"""Alembic migrations of the repository schema (``_schema``); run by
``_database.open_database``, never by hand.  A schema change is a new file
in ``versions/`` and a new ``SCHEMA_REVISION``."""
