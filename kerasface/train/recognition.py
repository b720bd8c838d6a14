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

With ``--views modalities`` the model reads a photometric-stereo tile (albedo | normal | depth,
``kerasface-photometric-stereo``): one embedding branch per panel of ``model.modalities``
(default all three), fused by concatenation; ``init_branches`` (one source, or one per
branch) and ``freeze_branches`` start the fusion from trained branches and keep them fixed.

The split is by identity: test (and validation) identities are never trained on. Each epoch
scores verification pairs of the validation identities and of the test identities (for the
report's curves), and of each standard pair set of ``data.val_pairs`` (LFW pairs.txt, ``.bin``,
CSV; named as kerasface-evaluate names them: ``lfw``, ``cfp_fp``). ``optim.monitor`` names the set
whose ``val_<set>_auc_cosine`` picks the best checkpoint (default ``validation``: the validation
identities). The run's ``results.test`` are the best checkpoint's accuracy (LFW 10-fold
protocol), ROC AUC by cosine and by euclidean distance, EER and TAR@FAR. ``model.keras`` is the
embedding model without its head.

A margin head's scale and margin follow the training data's size
(``kerasface.train.recognition_defaults``) unless ``model.paper_settings`` is set (each head's
paper defaults); the report's "Loss settings" section records them and why.
"""

from __future__ import annotations

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


@TASKS.register("recognition")
class RecognitionTask(Task):
    name = "recognition"
    target = "identity"
    output_activation = "embedding"
    loss_settings_from_data = True

    def __init__(self, config, spec):
        super().__init__(config, spec)
        self.loss_name, self.head_name = parse_loss(config.model.loss)
        self.pair_sets: dict[str, PairSet] = {}
        self.loss_settings = ""

    @property
    def output_names(self) -> list[str]:
        return [f"embedding_{k}" for k in range(self.config.model.embedding_dim)]

    @classmethod
    def check_config(cls, config):
        parse_loss(config.model.loss)
        if config.data.views not in ("single", "modalities"):
            raise ValueError(f"the recognition task trains one image per sample, or one photometric-stereo tile "
                             f"(--views modalities); use --views single (got {config.data.views!r})")
        modalities = config.model.modalities
        if config.data.views != "modalities" and modalities:
            raise ValueError(f"--modalities {' '.join(modalities)} chooses panels of a photometric-stereo tile; "
                             "add --views modalities")
        known = VIEW_NAMES["modalities"]
        if [m for m in modalities if m not in known] or len(set(modalities)) != len(modalities):
            raise ValueError(f"--modalities must be distinct names from {list(known)}, got {modalities}")
        if config.data.split != "identity":
            raise ValueError("the recognition task verifies faces of identities it never trained on; "
                             "use --split identity")

    def check_data(self, splits):
        self.splits = splits
        if self.spec.num_classes < 2 or (self.spec.samples.identity < 0).any():
            raise ValueError(f"{self.spec.source}: the recognition task needs an identity per image and at "
                             "least two identities (image sub-folders, or an 'identity' CSV column)")
        for name, samples in splits.items():
            if name == "train":
                continue
            try:
                identity_pairs(samples.identity, max_pairs=2)
            except ValueError as error:
                raise BadInputError(f"{self.spec.source}: the {name} split: {error}; raise --{name}-fraction or "
                                    "give more identities") from None
        self.pair_sets = read_val_pairs(self.config.data.val_pairs)
        monitor = self.config.optim.monitor
        if monitor != "validation" and monitor not in self.pair_sets:
            raise BadInputError(f"--monitor {monitor!r}: no such verification set; the sets are 'validation' (the "
                                f"validation identities) and those of --val-pairs: {sorted(self.pair_sets) or 'none'}")
        if self.loss_settings_from_data:
            self.resolve_loss_settings(splits["train"])

    def resolve_loss_settings(self, train) -> None:
        """Set ``config.model.loss_kwargs`` from the training split's size
        (``recognition_defaults``) under the given ones, or leave each head's paper defaults."""
        model = self.config.model
        if model.paper_settings:
            self.loss_settings = ("paper settings (--paper-settings): each head's own defaults (ArcFace s=64, "
                                  f"m=0.5), loss_kwargs {model.loss_kwargs or 'none'}")
            return
        identities = np.unique(train.identity[train.identity >= 0])
        per_identity = len(train.identity) / max(len(identities), 1)
        model.loss_kwargs, self.loss_settings = recognition_defaults(self.head_name, len(identities), per_identity,
                                                                     model.loss_kwargs)

    @property
    def num_train_classes(self) -> int:
        return self.spec.num_classes

    def sampler(self):
        if self.loss_name in METRIC_LOSSES:
            data = self.config.data
            return data.pk_identities, data.pk_images
        return super().sampler()

    @property
    def partial_fc(self) -> bool:
        return bool(self.head_name) and self.config.model.loss_kwargs.get("sample_rate") is not None

    @property
    def modalities(self) -> list[str]:
        return list(self.config.model.modalities or VIEW_NAMES["modalities"])

    def model_io(self, x, y):
        if self.config.data.views == "modalities":  # the panels back into the tile the model reads
            x = tf.concat(list(x), axis=2)
        return self.identity_io(x, y)

    def identity_io(self, x, identity):
        """(model inputs, identity target): a margin head takes ``(images, identity)``, and under
        Partial FC its logits hold each sample's target in column 0, so the target is 0."""
        if not self.head_name:
            return x, identity
        # a tf.data map: plain tensor arithmetic
        return (x, identity), (identity * 0 if self.partial_fc else identity)

    def build_embedding_model(self) -> keras.Model:
        model, size = self.config.model, self.config.data.image_size
        if self.config.data.views != "modalities":
            if model.init:
                return load_embedding_model(model.init, (size, size, 3), model.embedding_dim)
            return build_embedding_model(model.backbone, (size, size, 3), model.embedding_dim, **model.backbone_kwargs)
        embedder = build_modality_embedding_model(model.backbone, size, self.modalities, VIEW_NAMES["modalities"],
                                                  model.embedding_dim, frozen=model.freeze_branches,
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
        head = margin_head(self.head_name, self.num_train_classes, **self.config.model.loss_kwargs, name="margin_head")
        return build_margin_model(embedding_model, head, name=f"{embedding_model.name}_{self.head_name}")

    def inference_model(self, model: keras.Model) -> keras.Model:
        return model.get_layer(EMBEDDING_LAYER) if self.head_name else model

    def loss(self):
        if self.loss_name in METRIC_LOSSES:
            return METRIC_LOSSES.get(self.loss_name)(**self.config.model.loss_kwargs)
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
        freeze = self.config.model.freeze_backbone_epochs
        if freeze and self.head_name:
            callbacks.insert(0, FreezeLayer(EMBEDDING_LAYER, freeze))
        if self.pair_sets:
            data = self.config.data
            callbacks.append(PairSetEvaluation(self.pair_sets, embedding_model=self.inference_model,
                                               batch_size=self.config.optim.batch_size, image_size=data.image_size,
                                               resize_mode=data.resize_mode))
        monitor = self.config.optim.monitor
        if monitor in self.pair_sets or "validation" in sets:
            return Monitoring(f"{metric_prefix(monitor)}auc_cosine", "max", callbacks)
        return Monitoring("loss", "min", callbacks)

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
        return [{"title": "Loss settings", "text": f"{self.config.model.loss}: "
                 f"{self.config.model.loss_kwargs or 'the head defaults'}. Why: {self.loss_settings}."}]

    def layout(self) -> str:
        partial = (f", Partial FC at sample rate {self.config.model.loss_kwargs['sample_rate']}"
                   if self.partial_fc else "")
        head = f" -> {self.config.model.loss} head ({self.num_train_classes} identities{partial})" \
            if self.head_name else f" -> {self.config.model.loss} loss"
        model = self.config.model
        if self.config.data.views != "modalities":
            return f"1 image -> {model.backbone} -> embedding {model.embedding_dim}{head}"
        frozen = " (frozen)" if model.freeze_branches else ""
        if len(self.modalities) == 1:
            return f"{self.modalities[0]} panel -> {model.backbone}{frozen} -> embedding {model.embedding_dim}{head}"
        return (f"{' | '.join(self.modalities)} panels -> {len(self.modalities)}x {model.backbone}{frozen} -> concat "
                f"-> Dense {model.embedding_dim} -> embedding{head}")


def read_val_pairs(paths) -> dict[str, PairSet]:
    """The pair sets of ``--val-pairs`` by name (``load_pair_set``: a pairs.txt's images lie
    beside it, as for kerasface-evaluate); two files of one name are refused."""
    sets: dict[str, PairSet] = {}
    for path in paths:
        pair_set = load_pair_set(path)
        if pair_set.name in sets or pair_set.name in ("validation", "test"):
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
