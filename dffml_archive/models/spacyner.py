"""``spacyner``: named-entity recognition with spaCy 3, our own DFFML model
(``spacyner_archive`` stores it in an archive).

dffml-model-spacy on PyPI ships no code (every release holds only its
``__init__``/``version``), so this is a model of our own, written for
spaCy 3.7, keeping the interface its tests document: options
``model_name_or_path``, ``n_iter`` and ``dropout``; records with the
features ``sentence`` (the text) and ``entities`` (``(start, end, label)``
character spans); predictions under ``Tag``.

What it does:

* ``train`` starts from ``model_name_or_path`` every time (so the same
  records and options give the same model): a language code (``en``, the
  default, ``de``, ...) is a blank pipeline (``spacy.blank``), anything else
  must be an installed pipeline package or a pipeline directory
  (``spacy.load``).  Nothing is ever downloaded.  An ``ner`` component is
  added when the pipeline has none, then trained for ``n_iter`` passes over
  the records.
* The trained pipeline is saved with ``nlp.to_disk`` into
  ``<directory>/pipeline``, with ``<directory>/spacyner.json`` (the
  ``SimpleModel`` storage) holding the confidence and the labels; so it is
  in the archive, and predicting needs neither the package nor the
  network.  They are written when the model is left, only when something
  was trained or assessed (predicting changes nothing) and never after an
  error (see :class:`~dffml_archive.models._base.SavingSimpleModel`).  The
  pipeline is written beside and swapped in whole: a failure never leaves
  a half-written one.
* ``predict`` gives, for each record, the list of entities found in its
  text as ``(text, label, start, end)`` tuples (character offsets;
  ``value[i][1]`` is the label, as upstream documented).

**Confidence** is the model's entity-level F1 score (spaCy's ``ents_f``,
between 0 and 1): measured by the most recent ``accuracy`` run, which also
returns it, or, before any, on the training records at the end of
training.  It is a property of the model, the same for every prediction,
not a per-entity probability (spaCy's transition-based recogniser computes
none).
"""
import json
import pathlib
import random
import re
from typing import AsyncIterator, Dict, List, Sequence, Tuple

import spacy
from dffml import Accuracy, config, entrypoint, field
from dffml.model.model import ModelNotTrained
from dffml.record import Record
from spacy.training import Example
from spacy.util import minibatch

from dffml_archive._atomic import atomic_replace_directory
from dffml_archive.models._base import SavingSimpleModel

#: Where the pipeline and the model's own state live in the model directory.
PIPELINE_DIRECTORY = "pipeline"
STATE_FILE = "spacyner.json"
_LANGUAGE_CODE = re.compile(r"[a-z]{2,3}")


@config
class SpacyNERModelConfig:
    directory: pathlib.Path = field("Directory where state should be saved")
    model_name_or_path: str = field(
        "Pipeline to start training from: a language code for a blank "
        "pipeline (en, de, ...), an installed pipeline package (e.g. "
        "en_core_web_sm) or a pipeline directory; never downloaded",
        default="en",
    )
    n_iter: int = field("Passes over the training records", default=10)
    dropout: float = field("Dropout rate while training", default=0.2)
    batch_size: int = field("Records per training update", default=8)
    seed: int = field("Random seed of training", default=0)
    sentence_feature: str = field("Feature holding the text", default="sentence")
    entities_feature: str = field(
        "Feature holding the entities to learn: (start, end, label) character "
        "spans (lists, tuples, {start, end, label} dicts, or that as JSON text)",
        default="entities",
    )
    predict: str = field("Name of the prediction", default="Tag")


def base_pipeline(name: str):
    """A pipeline to train from: blank for a language code, else an installed
    package or a directory.  Never downloads."""
    if _LANGUAGE_CODE.fullmatch(name):
        try:
            spacy.util.get_lang_class(name)
        except ImportError:
            pass
        else:
            return spacy.blank(name)
    path = pathlib.Path(name).expanduser()
    if path.is_dir() or spacy.util.is_package(name):
        return spacy.load(path if path.is_dir() else name)
    raise ValueError(
        f"model_name_or_path {name!r} is neither a spaCy language code (for a "
        "blank pipeline), an installed pipeline package nor a pipeline "
        "directory; pipelines are never downloaded here: install one first "
        "(python -m spacy download NAME) or give a language code such as 'en'"
    )


def entity_spans(value) -> List[Tuple[int, int, str]]:
    """``(start, end, label)`` spans from what a record holds."""
    if value is None:
        return []
    if isinstance(value, str):
        value = json.loads(value) if value.strip() else []
    spans = []
    for entity in value:
        if isinstance(entity, dict):
            label = entity.get("label", entity.get("tag"))
            spans.append((int(entity["start"]), int(entity["end"]), str(label)))
        else:
            start, end, label = entity
            spans.append((int(start), int(end), str(label)))
    return spans


@entrypoint("spacyner")
class SpacyNERModel(SavingSimpleModel):
    """Named-entity recognition with spaCy 3 (see the module docstring)."""

    CONFIG = SpacyNERModelConfig
    STATE_FILE = STATE_FILE

    def __init__(self, config) -> None:
        super().__init__(config)
        self.nlp = None

    @property
    def pipeline_directory(self) -> pathlib.Path:
        return pathlib.Path(self.config.directory, PIPELINE_DIRECTORY)

    def load_files(self) -> None:
        if self.storage:
            self.nlp = spacy.load(self.pipeline_directory)

    def save_files(self) -> None:
        with atomic_replace_directory(self.pipeline_directory) as temporary:
            self.nlp.to_disk(temporary)

    def release(self) -> None:
        self.nlp = None

    def _records(self, sources, with_entities: bool):
        wanted = [self.config.sentence_feature]
        if with_entities:
            wanted.append(self.config.entities_feature)
        return sources.with_features(wanted)

    async def _examples(self, nlp, sources) -> List[Example]:
        config = self.config
        examples = []
        async for record in self._records(sources, with_entities=True):
            doc = nlp.make_doc(str(record.feature(config.sentence_feature)))
            spans = entity_spans(record.feature(config.entities_feature))
            examples.append(Example.from_dict(doc, {"entities": spans}))
        if not examples:
            raise ValueError(
                f"no records with features {config.sentence_feature!r} and "
                f"{config.entities_feature!r} to learn from"
            )
        return examples

    async def train(self, sources) -> None:
        config = self.config
        spacy.util.fix_random_seed(config.seed)
        nlp = base_pipeline(config.model_name_or_path)
        examples = await self._examples(nlp, sources)
        fresh = "ner" not in nlp.pipe_names
        ner = nlp.add_pipe("ner", last=True) if fresh else nlp.get_pipe("ner")
        for example in examples:
            for entity in example.reference.ents:
                ner.add_label(entity.label_)
        others = [name for name in nlp.pipe_names if name != "ner"]
        shuffle = random.Random(config.seed).shuffle
        with nlp.select_pipes(disable=others):
            if not others and fresh:
                optimizer = nlp.initialize(lambda: examples)
            elif fresh:
                ner.initialize(lambda: examples, nlp=nlp)
                optimizer = nlp.create_optimizer()
            else:
                optimizer = nlp.resume_training()
            for _ in range(config.n_iter):
                shuffle(examples)
                losses: Dict[str, float] = {}
                for batch in minibatch(examples, size=config.batch_size):
                    nlp.update(batch, drop=config.dropout, sgd=optimizer, losses=losses)
                self.logger.debug("losses %r", losses)
        self.nlp = nlp
        self.files_changed()
        self._set_confidence(self._score(examples))

    async def accuracy(self, sources) -> Accuracy:
        nlp = self._require_pipeline("assess accuracy")
        score = self._score(await self._examples(nlp, sources))
        self._set_confidence(score)
        return Accuracy(score)

    async def predict(self, sources) -> AsyncIterator[Record]:
        nlp = self._require_pipeline("predict")
        confidence = self.storage["confidence"]
        async for record in self._records(sources, with_entities=False):
            doc = nlp(str(record.feature(self.config.sentence_feature)))
            entities = [
                (entity.text, entity.label_, entity.start_char, entity.end_char)
                for entity in doc.ents
            ]
            record.predicted(self.config.predict, entities, confidence)
            yield record

    def _require_pipeline(self, action: str):
        if self.nlp is None:
            raise ModelNotTrained(f"train the model before you {action}")
        return self.nlp

    def _score(self, examples: Sequence[Example]) -> float:
        """Entity-level F1 of the pipeline on ``examples`` (NaN if spaCy has none)."""
        value = self.nlp.evaluate(list(examples)).get("ents_f")
        return float("nan") if value is None else float(value)

    def _set_confidence(self, score: float) -> None:
        self.storage = {"confidence": score, "labels": sorted(self.nlp.get_pipe("ner").labels)}
