"""The recognition task: an embedding model trained with a margin head or a metric loss, and
verified on identities it never saw.

- Margin heads (``kerasface.registry.MARGIN_HEADS``, e.g. ``arcface``): the training model is
  ``(images, labels) -> backbone -> embedding -> head(embedding, labels) -> logits`` with
  softmax cross-entropy; ``focal+normface`` and ``ohem+normface`` put the focal or OHEM loss
  over a head's logits. ``loss_kwargs {"sample_rate": 0.1}`` trains the head with
  Partial FC (``kerasface.losses.PartialFC``): its logits hold the target in column 0, so the
  loss and accuracy are given label 0 (accuracy is then among the sampled classes).
- Metric losses (``METRIC_LOSSES``, e.g. ``triplet``): the training model is the embedding model,
  trained on P x K identity batches.

The task's settings are the ``recognition`` section of the run's config (``RecognitionConfig``:
loss, embedding size, head settings, the model to start from, pair sets and the monitored set).

With ``--views modalities`` the model reads a photometric-stereo tile (albedo | normal | depth,
``kerasface-photometric-stereo``): one embedding branch per panel of ``recognition.modalities``
(default all three), fused by concatenation; ``init_branches`` (one source, or one per
branch) and ``freeze_branches`` start the fusion from trained branches and keep them fixed.

The split is by identity: test (and validation) identities are never trained on. Each epoch
scores verification pairs of the validation identities and of the test identities (for the
report's curves), and of each standard pair set of ``recognition.val_pairs`` (LFW pairs.txt, ``.bin``,
CSV; named as kerasface-evaluate names them: ``lfw``, ``cfp_fp``). ``recognition.monitor`` names the set
whose ``val_<set>_auc_cosine`` picks the best checkpoint (default ``validation``: the validation
identities). The run's ``results.test`` are the best checkpoint's accuracy (LFW 10-fold
protocol), ROC AUC by cosine and by euclidean distance, EER and TAR@FAR. ``model.keras`` is the
embedding model without its head, which holds a centre per training identity only.

A margin head's scale and margin follow the training data's size
(``kerasface.train.recognition_defaults``) unless ``recognition.paper_settings`` is set (each head's
paper defaults); the report's "Loss settings" section records them and why.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from kerasface.data.crops import VIEW_NAMES
from kerasface.errors import BadInputError
from kerasface.eval.callback import PairSetEvaluation, logged_figures, metric_prefix
from kerasface.eval.identity import identity_pairs, verify_identities
from kerasface.eval.pairs import PairSet, load_pair_set
from kerasface.eval.verification import VerificationResult, l2_normalize
from kerasface.losses import margin_head
from kerasface.models.branches import init_branches_from
from kerasface.models.embedding import (
    EMBEDDING_LAYER,
    build_embedding_model,
    build_margin_model,
    build_modality_embedding_model,
    load_embedding_model,
)
from kerasface.registry import LOGIT_LOSSES, MARGIN_HEADS, METRIC_LOSSES, TASKS
from kerasface.saving import run_model_file
from kerasface.settings_file import json_object
from kerasface.train.predict import predict_split
from kerasface.train.recognition_defaults import recognition_defaults
from kerasface.train.tasks import Monitoring, Task

DEMO_HEAD_SCALE = 16.0
DEMO_ARCFACE_MARGIN = 0.3


def parse_loss(name: str) -> tuple[str | None, str | None]:
    """``"arcface"`` -> (None, "arcface"); ``"ohem+normface"`` -> ("ohem", "normface");
    ``"triplet"`` -> ("triplet", None)."""
    name = name.lower()
    if name in METRIC_LOSSES:
        return name, None
    loss, _, head = name.rpartition("+")
    if loss and loss not in LOGIT_LOSSES:
        raise KeyError(f"unknown loss {name!r}: before '+' comes one of {LOGIT_LOSSES.names()}, e.g. 'ohem+normface'")
    MARGIN_HEADS.get(head)
    return loss or None, head


def loss_choices() -> str:
    """What ``--loss`` names, from the registries."""
    return (f"a margin head ({', '.join(MARGIN_HEADS.names())}), "
            f"{' or '.join(f'{loss}+HEAD' for loss in LOGIT_LOSSES.names())} over a head's logits, "
            f"or a metric loss ({', '.join(METRIC_LOSSES.names())}; P x K batches)")


def demo_loss_kwargs(loss: str) -> dict:
    """Margin-head options for a demo run's few training identities (about 60, where ArcFace's
    s=64, m=0.5 were chosen for thousands): every head at scale 16 and ArcFace at margin 0.3,
    at which the demo learns and at s=64 it does not (docs/benchmarks.md, "Recognition demo").
    Metric losses: none."""
    _, head = parse_loss(loss)
    if head is None:
        return {}
    return {"scale": DEMO_HEAD_SCALE, **({"margin": DEMO_ARCFACE_MARGIN} if head == "arcface" else {})}


@dataclasses.dataclass
class EmbeddingLossConfig:
    """An identity embedding and what trains it (the recognition and multitask tasks' settings)."""

    loss: str = "arcface"
    loss_kwargs: dict = dataclasses.field(default_factory=dict)
    embedding_dim: int = 512


@dataclasses.dataclass
class RecognitionConfig(EmbeddingLossConfig):
    """The recognition task's settings (the ``recognition`` section of a run's config)."""

    # each margin head's paper settings instead of the scale and margin chosen from the training data
    paper_settings: bool = False
    # an embedding model (.keras or run folder) to start from, under a new head
    init: str | None = None
    # epochs at the start in which the embedding model stays fixed (the head trains)
    freeze_backbone_epochs: int = 0
    # --views modalities: the tile panels the embedding reads, one branch each (empty: all)
    modalities: list[str] = dataclasses.field(default_factory=list)
    # pair sets verified every epoch, and the set whose cosine AUC picks the best checkpoint
    val_pairs: list[str] = dataclasses.field(default_factory=list)
    monitor: str = "validation"


def add_embedding_loss_arguments(group, loss: str, embedding_dim: int) -> None:
    """--loss, --loss-kwargs and --embedding-dim (the defaults shown: ``loss``, ``embedding_dim``)."""
    group.add_argument("--loss", help=f"what trains the embedding: {loss_choices()} (default {loss})")
    group.add_argument("--loss-kwargs", type=json_object, metavar="JSON",
                       help='options of the head or loss, e.g. \'{"margin": 0.4}\'')
    group.add_argument("--embedding-dim", type=int, help=f"embedding size (default {embedding_dim})")


def absolute_path(path: str) -> str:
    return str(Path(path).resolve())


@TASKS.register("recognition")
class RecognitionTask(Task):
    name = "recognition"
    summary = "an identity embedding trained with a margin head or metric loss, verified on unseen identities"
    target = "identity"
    output_activation = "embedding"
    config_cls = RecognitionConfig

    def __init__(self, config, spec):
        super().__init__(config, spec)
        self.loss_name, self.head_name = parse_loss(self.task_config.loss)
        self.pair_sets: dict[str, PairSet] = {}
        self.loss_settings = ""
        self.head_class: np.ndarray | None = None
        self.trained_identities = 0

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        from kerasface.cli.common import non_negative_int

        g = parser.add_argument_group("recognition")
        add_embedding_loss_arguments(g, "arcface", 512)
        a = g.add_argument
        a("--paper-settings", action="store_true", default=None,
          help="each margin head's paper settings (ArcFace s=64, m=0.5) instead of the scale and margin chosen "
               "from the training identities (AdaCos' scale, a smaller margin below 10,000)")
        a("--init", metavar="MODEL",
          help="embedding model to fine-tune: a .keras file (kerasface-import-model) or a run folder")
        a("--freeze-backbone-epochs", type=non_negative_int, metavar="N",
          help="train only the new head for the first N epochs, then the whole model (default 0)")
        a("--modalities", nargs="+", choices=VIEW_NAMES["modalities"],
          help="with --views modalities: the tile panels the embedding reads, one branch each, fused by "
               "concatenation when several (default all three)")
        a("--val-pairs", nargs="+", metavar="PATH", type=absolute_path,
          help="verify these pair sets every epoch (LFW pairs.txt with its images beside it, insightface .bin, "
               "path1,path2,same CSV), logged as val_<set>_accuracy, val_<set>_auc_cosine, ... (<set>: the "
               "file's stem, a pairs.txt's folder)")
        a("--monitor", metavar="SET", help="the set whose val_<SET>_auc_cosine picks the best checkpoint: "
          "validation (default: the validation identities) or a --val-pairs set")
        # data settings (every task's data reading applies them) that only this task's commands offer
        a("--exclude-identities", nargs="+", metavar="FILE", type=absolute_path,
          help="leave out of training the people these files name: LFW pairs.txt, path1,path2,same CSVs (an "
               "image's folder is its person) or lists of names, one a line")
        a("--min-images-per-identity", type=int, metavar="N",
          help="leave out of training the identities with fewer than N images (default 1: none)")

    @property
    def output_names(self) -> list[str]:
        return [f"embedding_{k}" for k in range(self.task_config.embedding_dim)]

    @classmethod
    def check_config(cls, config):
        options = config.task_config
        parse_loss(options.loss)
        if config.data.views not in ("single", "modalities"):
            raise ValueError(f"the recognition task trains one image per sample, or one photometric-stereo tile "
                             f"(--views modalities); use --views single (got {config.data.views!r})")
        modalities = options.modalities
        if config.data.views != "modalities" and modalities:
            raise ValueError(f"--modalities {' '.join(modalities)} chooses panels of a photometric-stereo tile; "
                             "add --views modalities")
        known = VIEW_NAMES["modalities"]
        if [m for m in modalities if m not in known] or len(set(modalities)) != len(modalities):
            raise ValueError(f"--modalities must be distinct names from {list(known)}, got {modalities}")
        check_identity_split(config)

    @classmethod
    def needs_test_split(cls, config):
        """Not when ``--val-pairs`` score the run."""
        return not config.task_config.val_pairs

    def check_data(self, splits):
        self.check_identities(splits)
        self.pair_sets = read_val_pairs(self.task_config.val_pairs)
        monitor = self.task_config.monitor
        if monitor != "validation" and monitor not in self.pair_sets:
            raise BadInputError(f"--monitor {monitor!r}: no such verification set; the sets are 'validation' (the "
                                f"validation identities) and those of --val-pairs: {sorted(self.pair_sets) or 'none'}")
        self.resolve_loss_settings(splits["train"])

    def check_identities(self, splits) -> None:
        """Refuse data without an identity per image, or splits without same/different pairs to verify;
        number the training identities for the head (``head_classes``)."""
        self.splits = splits
        if "train" in splits:
            self.head_class, self.trained_identities = head_classes(self.spec.num_classes, splits["train"].identity)
        if self.spec.num_classes < 2 or (self.spec.samples.identity < 0).any():
            raise ValueError(f"{self.spec.source}: the {self.name} task needs an identity per image and at "
                             "least two identities (image sub-folders, or an 'identity' CSV column)")
        for name, samples in splits.items():
            if name == "train":
                continue
            try:
                identity_pairs(samples.identity, max_pairs=2)
            except ValueError as error:
                raise BadInputError(f"{self.spec.source}: the {name} split: {error}; raise --{name}-fraction or "
                                    "give more identities") from None

    def resolve_loss_settings(self, train) -> None:
        """Set ``loss_kwargs`` from the training split's size (``recognition_defaults``) under the
        given ones, or leave each head's paper defaults."""
        options = self.task_config
        if options.paper_settings:
            self.loss_settings = ("paper settings (--paper-settings): each head's own defaults (ArcFace s=64, "
                                  f"m=0.5), loss_kwargs {options.loss_kwargs or 'none'}")
            return
        identities = np.unique(train.identity[train.identity >= 0])
        per_identity = len(train.identity) / max(len(identities), 1)
        options.loss_kwargs, self.loss_settings = recognition_defaults(self.head_name, len(identities), per_identity,
                                                                       options.loss_kwargs)

    @property
    def num_train_classes(self) -> int:
        """The margin head's classes: the training split's identities (every identity of the
        dataset before ``check_data`` has seen the splits, as in a dry run)."""
        return self.trained_identities or self.spec.num_classes

    def sampler(self):
        if self.loss_name in METRIC_LOSSES:
            data = self.config.data
            return data.pk_identities, data.pk_images
        return super().sampler()

    @property
    def partial_fc(self) -> bool:
        return bool(self.head_name) and self.task_config.loss_kwargs.get("sample_rate") is not None

    @property
    def modalities(self) -> list[str]:
        return list(self.task_config.modalities or VIEW_NAMES["modalities"])

    def model_io(self, x, y):
        if self.config.data.views == "modalities":  # the panels back into the tile the model reads
            x = tf.concat(list(x), axis=2)
        return self.identity_io(x, y)

    def identity_io(self, x, identity):
        """(model inputs, identity target): a margin head takes ``(images, class)``, the identity's
        class among the training identities (``head_classes``), and under Partial FC its logits
        hold each sample's target in column 0, so the target is 0."""
        if not self.head_name:
            return x, identity
        if self.head_class is not None:  # a tf.data map: plain tensor ops
            identity = tf.gather(tf.constant(self.head_class, identity.dtype), identity)
        return (x, identity), (identity * 0 if self.partial_fc else identity)

    def build_embedding_model(self) -> keras.Model:
        model, options, size = self.config.model, self.task_config, self.config.data.image_size
        if self.config.data.views != "modalities":
            if options.init:
                return load_embedding_model(options.init, (size, size, 3), options.embedding_dim)
            return build_embedding_model(model.backbone, (size, size, 3), options.embedding_dim,
                                         **model.backbone_kwargs)
        embedder = build_modality_embedding_model(model.backbone, size, self.modalities, VIEW_NAMES["modalities"],
                                                  options.embedding_dim, frozen=model.freeze_branches,
                                                  **model.backbone_kwargs)
        sources = model.init_branches
        if sources:
            sources = [sources] * len(self.modalities) if isinstance(sources, str) else list(sources)
            if len(sources) != len(self.modalities):
                raise ValueError(f"init_branches gives {len(sources)} sources for {len(self.modalities)} branches "
                                 f"({', '.join(self.modalities)}); give one, or one per branch")
            for index, source in enumerate(sources):
                init_branches_from(embedder, str(run_model_file(source)), indices=[index])
        return embedder

    def build_model(self) -> keras.Model:
        embedding_model = self.build_embedding_model()
        if not self.head_name:
            return embedding_model
        head = margin_head(self.head_name, self.num_train_classes, **self.task_config.loss_kwargs, name="margin_head")
        return build_margin_model(embedding_model, head, name=f"{embedding_model.name}_{self.head_name}")

    def inference_model(self, model: keras.Model) -> keras.Model:
        return model.get_layer(EMBEDDING_LAYER) if self.head_name else model

    def loss(self):
        if self.loss_name in METRIC_LOSSES:
            return METRIC_LOSSES.get(self.loss_name)(**self.task_config.loss_kwargs)
        if self.loss_name:
            return LOGIT_LOSSES.get(self.loss_name)()
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def metrics(self):
        if self.head_name:
            return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        return []

    def validation_data(self, pipelines):
        return None

    def monitoring(self, run_dir, pipelines):
        """Verification of the validation and test identities, logged each epoch from their
        pipelines whatever the dataset's storage, and of the ``--val-pairs`` sets; the
        ``--monitor`` set's cosine AUC picks the best checkpoint."""
        from kerasface.train.callbacks import FreezeLayer

        sets = {name: pipelines[name] for name in ("validation", "test") if name in pipelines}
        callbacks = [SplitVerification(self, sets)]
        freeze = self.task_config.freeze_backbone_epochs
        if freeze and self.head_name:
            callbacks.insert(0, FreezeLayer(EMBEDDING_LAYER, freeze))
        if self.pair_sets:
            data = self.config.data
            callbacks.append(PairSetEvaluation(self.pair_sets, embedding_model=self.inference_model,
                                               batch_size=self.config.optim.batch_size, image_size=data.image_size,
                                               resize_mode=data.resize_mode))
        monitor = self.task_config.monitor
        if monitor in self.pair_sets or "validation" in sets:
            return Monitoring(f"{metric_prefix(monitor)}auc_cosine", "max", callbacks)
        return Monitoring("loss", "min", callbacks)

    def best_epoch_results(self, history, best_epoch):
        """Each ``--val-pairs`` set's figures at the best epoch, as ``results.<set>``."""
        results = {}
        for name in self.pair_sets:
            prefix = metric_prefix(name)
            figures = {k[len(prefix):]: v[best_epoch - 1] for k, v in history.items()
                       if k.startswith(prefix) and len(v) >= best_epoch}
            if figures:
                results[name] = figures
        return results

    def verify_split(self, model, dataset) -> tuple[VerificationResult, np.ndarray, np.ndarray]:
        """(figures, issame, cosine similarity) of the identity pairs of a split, embedded by
        ``model``'s embedding model through the split's pipeline of ``model_io`` batches (a margin
        head's inputs carry the identity; its targets may be Partial FC's zeros)."""
        images_only = dataset.map(lambda x, y: tuple(x) if isinstance(x, tuple) else (x, y))
        identity, embeddings = predict_split(self.inference_model(model), images_only)
        result, pairs, issame = verify_identities(identity, embeddings, seed=self.config.seed)
        first, second = l2_normalize(embeddings[pairs[:, 0]]), l2_normalize(embeddings[pairs[:, 1]])
        return result, issame, np.sum(first * second, axis=1)

    def evaluate(self, model, dataset):
        """Verification figures of the test identities' pairs, embedded through the test pipeline."""
        result, issame, cosine = self.verify_split(model, dataset)
        figures = result.to_dict()
        flat = {k: v for k, v in figures.items() if isinstance(v, (int, float))}
        for far, tar in (figures.get("tar_at_far") or {}).items():
            flat[f"tar_at_far_{far}"] = tar
        return flat, {"roc": {"verification (cosine)": (issame.astype(np.float32), cosine)}}

    def report_sections(self, history):
        if not self.loss_settings:
            return []
        options = self.task_config
        return [{"title": "Loss settings", "text": f"{options.loss}: "
                 f"{options.loss_kwargs or 'the head defaults'}. Why: {self.loss_settings}."}]

    def layout(self) -> str:
        model, options = self.config.model, self.task_config
        partial = f", Partial FC at sample rate {options.loss_kwargs['sample_rate']}" if self.partial_fc else ""
        head = f" -> {options.loss} head ({self.num_train_classes} identities{partial})" \
            if self.head_name else f" -> {options.loss} loss"
        dim = options.embedding_dim
        if self.config.data.views != "modalities":
            return f"1 image -> {model.backbone} -> embedding {dim}{head}"
        frozen = " (frozen)" if model.freeze_branches else ""
        if len(self.modalities) == 1:
            return f"{self.modalities[0]} panel -> {model.backbone}{frozen} -> embedding {dim}{head}"
        return (f"{' | '.join(self.modalities)} panels -> {len(self.modalities)}x {model.backbone}{frozen} -> concat "
                f"-> Dense {dim} -> embedding{head}")


def head_classes(num_identities: int, trained: np.ndarray) -> tuple[np.ndarray, int]:
    """(each identity's class for the margin head, the number of trained identities): the trained
    identities are classes 0..T-1 in their order, the others T..N-1 in theirs, so that the head
    holds a centre per trained identity only, and a split's identities keep their order (and
    its verification pairs) under the new numbers."""
    is_trained = np.zeros(num_identities, bool)
    is_trained[np.unique(trained[trained >= 0])] = True
    order = np.concatenate([np.flatnonzero(is_trained), np.flatnonzero(~is_trained)])
    head_class = np.empty(num_identities, np.int64)
    head_class[order] = np.arange(num_identities)
    return head_class, int(is_trained.sum())


def check_identity_split(config) -> None:
    """Refuse a split that would verify trained identities (the recognition and multitask tasks)."""
    if config.data.split != "identity":
        raise ValueError(f"the {config.task} task verifies faces of identities it never trained on; "
                         "use --split identity")


def read_val_pairs(paths) -> dict[str, PairSet]:
    """The pair sets of ``--val-pairs`` by name (``load_pair_set``: a pairs.txt's images lie
    beside it, as for kerasface-evaluate); two files of one name are refused."""
    sets: dict[str, PairSet] = {}
    for path in paths:
        pair_set = load_pair_set(path)
        if pair_set.name in sets or pair_set.name in ("train", "validation", "test"):
            other = sets[pair_set.name].source if pair_set.name in sets else f"the {pair_set.name} split"
            raise BadInputError(f"{path}: --val-pairs set {pair_set.name!r} is named as {other}; give the "
                                "files distinct names")
        sets[pair_set.name] = pair_set
    return sets


class SplitVerification(keras.callbacks.Callback):
    """At each epoch's end, ``RecognitionTask.verify_split`` of each split (name -> its pipeline),
    logged as ``val_<split>_accuracy``, ``val_<split>_auc_cosine``, ...
    (``kerasface.eval.callback.logged_figures``)."""

    def __init__(self, task: RecognitionTask, sets: dict):
        super().__init__()
        self.task = task
        self.sets = dict(sets)

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        for name, dataset in self.sets.items():
            logs.update(logged_figures(name, self.task.verify_split(self.model, dataset)[0]))
