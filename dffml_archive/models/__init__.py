"""DFFML models of our own, each a plain DFFML model plugin (registered
under its upstream name, as well as ``NAME_archive`` by its backend module).

They exist because no PyPI release ships a working one: the wheel of
dffml-model-vowpalWabbit lacks a module (``vwmodel``, :mod:`.vwmodel`) and
dffml-model-spacy ships no code at all (``spacyner``, :mod:`.spacyner`).
Each is built on DFFML's ``SimpleModel`` (:mod:`._base` adds the rules of
this project: state written atomically, only when changed, never after an
error) and knows nothing of archives: ``dffml_archive/backends/`` wraps it.
"""
