"""DFFML's ``SimpleModel`` with this project's rules for saving."""
import json
import pathlib

from dffml.model.model import SimpleModel

from dffml_archive._atomic import atomic_replace


def _dumped(storage: dict) -> str:
    return json.dumps(storage, sort_keys=True)


class SavingSimpleModel(SimpleModel):
    """A ``SimpleModel`` (the model is its own context; ``storage`` is a
    JSON dict read when the outermost context is entered and written when it
    is left) whose state is written

    * into ``STATE_FILE`` in the directory, atomically (replaced whole);
    * only when something changed: predicting writes nothing;
    * never after an exception left any of its contexts: the saved state
      stays as it was (a half-trained model is not a model).

    A subclass with files of its own (weights, a pipeline) reads them in
    :meth:`load_files`, calls :meth:`files_changed` when it has new ones,
    writes them atomically in :meth:`save_files` (before the JSON state) and
    frees what it holds in :meth:`release`.
    """

    STATE_FILE = "Model"  # SimpleModel's name

    def disk_path(self, extention=None) -> pathlib.Path:
        return pathlib.Path(self.config.directory, self.STATE_FILE)

    def open(self) -> None:
        self._failed = self._changed_files = False
        super().open()
        self.load_files()
        self._saved = _dumped(self.storage)

    async def __aexit__(self, exc_type, exc_value, traceback):
        if exc_type is not None:
            self._failed = True
        await super().__aexit__(exc_type, exc_value, traceback)

    def close(self) -> None:
        try:
            if self._failed:
                self.logger.debug("an error occurred: %s not saved", self.config.directory)
                return
            if self._changed_files:
                self.save_files()
            if self._changed_files or _dumped(self.storage) != self._saved:
                with atomic_replace(self.disk_path()) as temporary:
                    temporary.write_text(_dumped(self.storage))
        finally:
            self.release()

    def files_changed(self) -> None:
        """The model's own files are to be written when it is left."""
        self._changed_files = True

    def load_files(self) -> None:
        """Read the model's own files (``storage`` is loaded)."""

    def save_files(self) -> None:
        """Write the model's own files, each atomically."""

    def release(self) -> None:
        """Free what the model holds (it was saved, or must not be)."""
