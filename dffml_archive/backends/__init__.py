"""One module per DFFML backend: each wraps the upstream model classes with
:func:`dffml_archive.model.archive_model` and holds only that backend's own
save/load quirks.  Every backend is declared once, in :mod:`._table`."""
