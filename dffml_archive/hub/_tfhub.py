"""TensorFlow Hub's own cache (``TFHUB_CACHE_DIR``) as a source of verified
copies.

tensorflow_hub keeps each module *unpacked* in ``<cache>/<sha1 of the
handle>/`` (downloaded beside it and renamed into place when complete, with
``<dir>.descriptor.txt`` naming the handle), and keeps no checksum of the
tarball it came from.  So a module there cannot be checked against a sha256
the user gives; without one, it is taken only once TensorFlow itself vouches
for it:

* ``saved_model.pb`` parses as a SavedModel with at least one graph;
* every variable is read back, which makes TensorFlow check each one's
  stored crc32c (a flipped byte is a DataLoss error);
* where the module carries ``fingerprint.pb`` (TensorFlow >= 2.11 writes
  one), its graph and checkpoint hashes are recomputed and must agree.

Assets (e.g. vocabularies) carry no checksum anywhere and are copied as they
are.  The checked copy is packed into a tarball in our cache, so the cache
keeps one rule: every entry is a file whose sha256 is in the lock file.
"""
import contextlib
import fcntl
import hashlib
import os
import pathlib
import shutil
import tarfile
import tempfile
import uuid
from typing import Optional

from .. import _constants as C
from .._atomic import fsync_directory
from ..errors import HubError
from ._cache import sha256_of


def cached_module(handle: str) -> Optional[pathlib.Path]:
    """tensorflow_hub's complete cache directory of ``handle``, or None."""
    directory = C.tfhub_cache() / hashlib.sha1(handle.encode("utf8")).hexdigest()
    if not directory.is_dir() or not any(directory.iterdir()):
        return None
    descriptor = pathlib.Path(f"{directory}.descriptor.txt")
    with contextlib.suppress(OSError):  # optional: it only helps people read the cache
        if f"Module: {handle}\n" not in descriptor.read_text(errors="replace") + "\n":
            return None
    return directory


def check_saved_model(directory, what) -> None:
    """Raise :class:`HubError` unless TensorFlow vouches for the SavedModel
    in ``directory`` (see the module's docstring)."""
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    directory = pathlib.Path(directory)
    graph = directory / "saved_model.pb"
    try:
        serialized = graph.read_bytes()
        proto = saved_model_pb2.SavedModel()
        proto.ParseFromString(serialized)
        if not proto.meta_graphs:
            raise ValueError("it holds no graph")
        variables = directory / "variables" / "variables"
        if pathlib.Path(f"{variables}.index").is_file():
            reader = tf.train.load_checkpoint(str(variables))
            for name in reader.get_variable_to_shape_map():
                reader.get_tensor(name)  # checks the stored crc32c
        _check_fingerprint(directory, serialized)
    except Exception as error:
        raise HubError(what, f"is not an intact SavedModel: {type(error).__name__}: "
                       f"{str(error)[:300]}", hint="remove it, and download the module "
                       "again") from None


def _check_fingerprint(directory: pathlib.Path, serialized: bytes) -> None:
    stored = directory / "fingerprint.pb"
    if not stored.is_file():
        return
    from tensorflow.core.protobuf import fingerprint_pb2

    try:  # TensorFlow's own computation; absent before 2.11
        from tensorflow.python.saved_model.pywrap_saved_model import fingerprinting
    except ImportError:
        return
    expected, found = fingerprint_pb2.FingerprintDef(), fingerprint_pb2.FingerprintDef()
    expected.ParseFromString(stored.read_bytes())
    found.ParseFromString(fingerprinting.CreateFingerprintDef(serialized, str(directory)))
    for field in ("graph_def_checksum", "graph_def_program_hash", "signature_def_hash",
                  "saved_object_graph_hash", "checkpoint_hash"):
        if getattr(expected, field) != getattr(found, field):
            raise ValueError(f"its {field} differs from fingerprint.pb")


def copy_checked_module(module, target: pathlib.Path, what) -> str:
    """Copy ``module`` (to a private temporary directory, out of ``prune``'s
    reach), check the copy (what is checked is what is kept), pack it as the
    tarball ``target`` atomically and return the tarball's sha256."""
    partial = target.parent / f".{target.name}.{uuid.uuid4().hex[:12]}{C.HUB_PARTIAL_SUFFIX}"
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dffml-hub-tfhub-") as scratch:
        copy = pathlib.Path(scratch, "module")
        shutil.copytree(module, copy, symlinks=True)
        _refuse_links(copy, what)
        check_saved_model(copy, what)
        try:
            with open(partial, "wb") as raw:
                fcntl.flock(raw.fileno(), fcntl.LOCK_EX)  # in use: prune leaves it
                with tarfile.open(fileobj=raw, mode="w:gz", compresslevel=1) as tar:
                    for path in sorted(copy.rglob("*")):
                        tar.add(path, arcname=path.relative_to(copy).as_posix(),
                                recursive=False)
                raw.flush()
                os.fsync(raw.fileno())
                os.replace(partial, target)
            fsync_directory(target.parent)
        finally:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
    return sha256_of(target)


def _refuse_links(directory: pathlib.Path, what) -> None:
    for path in directory.rglob("*"):
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            raise HubError(what, f"holds {path.relative_to(directory)}, which is not a "
                           "plain file or directory", hint="a TF Hub module has only those")
