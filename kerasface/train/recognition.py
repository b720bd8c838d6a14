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

The split is by identity: test (and validation) identities are never trained on. Each epoch
scores verification pairs of the validation identities (the monitor for the best checkpoint)
and of the test identities (for the report's curves); the run's ``results.test`` are the
best checkpoint's accuracy (LFW 10-fold protocol), ROC AUC by cosine and by euclidean
distance, EER and TAR@FAR. ``model.keras`` is the embedding model without its head.
"""

from __future__ import annotations

import keras
import numpy as np

from kerasface.eval.pairs import PairSet, contiguous_folds
from kerasface.eval.verification import evaluate as verify, l2_normalize
from kerasface.losses import margin_head
from kerasface.models.embedding import (
    EMBEDDING_LAYER,
    build_embedding_model,
    build_margin_model,
    load_embedding_model,
)
from kerasface.registry import LOGIT_LOSSES, MARGIN_HEADS, METRIC_LOSSES, TASKS
from kerasface.train.tasks import Task, predict_split

MAX_PAIRS = 3000
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


def identity_pairs(identity: np.ndarray, max_pairs: int = MAX_PAIRS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(pairs (N, 2) of sample indices, issame (N,)): up to ``max_pairs / 2`` same-identity
    pairs drawn from all of them, and as many different-identity pairs, shuffled together."""
    identity = np.asarray(identity)
    rng = np.random.default_rng(seed)
    i, j = np.triu_indices(len(identity), k=1)
    same = identity[i] == identity[j]
    positives = np.flatnonzero(same)
    negatives = np.flatnonzero(~same)
    count = min(max_pairs // 2, len(positives), len(negatives))
    if count == 0:
        raise ValueError(f"{len(identity)} images of {len(np.unique(identity))} identities make no same- and "
                         "different-identity pairs to verify; give the split at least two identities with "
                         "two images each")
    chosen = np.concatenate([rng.choice(positives, count, replace=False), rng.choice(negatives, count, replace=False)])
    chosen = rng.permutation(chosen)
    return np.stack([i[chosen], j[chosen]], 1), same[chosen]


def pair_folds(num_pairs: int) -> np.ndarray:
    """The protocol's 10 contiguous folds (fewer when there are fewer pairs)."""
    return contiguous_folds(num_pairs, min(10, num_pairs))


@TASKS.register("recognition")
class RecognitionTask(Task):
    name = "recognition"
    target = "identity"
    output_activation = "embedding"

    def __init__(self, config, spec):
        super().__init__(config, spec)
        self.loss_name, self.head_name = parse_loss(config.model.loss)

    @property
    def output_names(self) -> list[str]:
        return [f"embedding_{k}" for k in range(self.config.model.embedding_dim)]

    @classmethod
    def check_config(cls, config):
        parse_loss(config.model.loss)
        if config.data.views != "single":
            raise ValueError(f"the recognition task trains one image per sample; use --views single "
                             f"(got {config.data.views!r})")
        if config.data.split != "identity":
            raise ValueError("the recognition task verifies faces of identities it never trained on; "
                             "use --split identity")

    def check_data(self, splits):
        self.splits = splits
        if self.spec.num_classes < 2 or (self.spec.samples.identity < 0).any():
            raise ValueError(f"{self.spec.source}: the recognition task needs an identity per image and at "
                             "least two identities (image sub-folders, or an 'identity' CSV column)")
        for name, samples in splits.items():
            if name != "train" and len(np.unique(samples.identity)) < 2:
                raise ValueError(f"{self.spec.source}: the {name} split holds {len(np.unique(samples.identity))} "
                                 f"identity; verification needs two or more: raise --{name}-fraction or give "
                                 "more identities")

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

    def model_io(self, x, y):
        if not self.head_name:
            return x, y
        # Partial FC logits put each sample's target in column 0
        return (x, y), (y * 0 if self.partial_fc else y)  # a tf.data map: plain tensor arithmetic

    def build_embedding_model(self) -> keras.Model:
        size = self.config.data.image_size
        if self.config.model.init:
            return load_embedding_model(self.config.model.init, (size, size, 3), self.config.model.embedding_dim)
        return build_embedding_model(self.config.model.backbone, (size, size, 3), self.config.model.embedding_dim,
                                     **self.config.model.backbone_kwargs)

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

    def monitor_for(self, pipelines):
        return ("val_validation_auc_cosine", "max") if "validation" in pipelines else ("loss", "min")

    def pair_set(self, name: str, samples) -> PairSet:
        pairs, issame = identity_pairs(samples.identity, seed=self.config.seed)
        return PairSet(name, [str(p) for p in samples.paths[pairs.reshape(-1)]], issame, pair_folds(len(issame)))

    def callbacks(self, run_dir, pipelines):
        from kerasface.eval.callback import PairSetEvaluation

        from kerasface.train.callbacks import FreezeLayer

        freeze = self.config.model.freeze_backbone_epochs
        frozen = [FreezeLayer(EMBEDDING_LAYER, freeze)] if freeze and self.head_name else []
        if self.spec.storage != "files":
            return frozen
        sets = {name: self.pair_set(name, samples) for name, samples in self.splits.items() if name != "train"}
        return frozen + [PairSetEvaluation(sets, embedding_model=self.inference_model,
                                           image_size=self.config.data.image_size,
                                           resize_mode=self.config.data.resize_mode)]

    def evaluate(self, model, dataset):
        """Verification figures of the test identities' pairs, embedded through the test pipeline."""
        embedder = self.inference_model(model)
        # a margin head's inputs are (images, identity); its targets may be Partial FC's zeros
        images_only = dataset.map(lambda x, y: tuple(x) if isinstance(x, tuple) else (x, y))
        identity, embeddings = predict_split(embedder, images_only)
        pairs, issame = identity_pairs(identity, seed=self.config.seed)
        first, second = embeddings[pairs[:, 0]], embeddings[pairs[:, 1]]
        result = verify(first, second, issame, pair_folds(len(issame)))
        figures = result.to_dict()
        flat = {k: v for k, v in figures.items() if isinstance(v, (int, float))}
        for far, tar in (figures.get("tar_at_far") or {}).items():
            flat[f"tar_at_far_{far}"] = tar
        cosine = np.sum(l2_normalize(first) * l2_normalize(second), axis=1)
        return flat, {"roc": {"verification (cosine)": (issame.astype(np.float32), cosine)}}

    def layout(self) -> str:
        partial = (f", Partial FC at sample rate {self.config.model.loss_kwargs['sample_rate']}"
                   if self.partial_fc else "")
        head = f" -> {self.config.model.loss} head ({self.num_train_classes} identities{partial})" \
            if self.head_name else f" -> {self.config.model.loss} loss"
        return (f"1 image -> {self.config.model.backbone} -> embedding {self.config.model.embedding_dim}"
                f"{head}")
