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

from kerasface.errors import BadInputError
from kerasface.eval.callback import logged_figures
from kerasface.eval.identity import identity_pairs, verify_identities
from kerasface.eval.verification import VerificationResult, l2_normalize
from kerasface.losses import margin_head
from kerasface.models.embedding import EMBEDDING_LAYER, build_embedding_model, build_margin_model
from kerasface.registry import LOGIT_LOSSES, MARGIN_HEADS, METRIC_LOSSES, TASKS
from kerasface.train.predict import predict_split
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
            if name == "train":
                continue
            try:
                identity_pairs(samples.identity, max_pairs=2)
            except ValueError as error:
                raise BadInputError(f"{self.spec.source}: the {name} split: {error}; raise --{name}-fraction or "
                                    "give more identities") from None

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
        return self.identity_io(x, y)

    def identity_io(self, x, identity):
        """(model inputs, identity target): a margin head takes ``(images, identity)``, and under
        Partial FC its logits hold each sample's target in column 0, so the target is 0."""
        if not self.head_name:
            return x, identity
        # a tf.data map: plain tensor arithmetic
        return (x, identity), (identity * 0 if self.partial_fc else identity)

    def build_embedding_model(self) -> keras.Model:
        size = self.config.data.image_size
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

    def monitoring(self, run_dir, pipelines):
        """Verification of the validation identities (the best checkpoint's) and of the test
        identities, logged each epoch from their pipelines, whatever the dataset's storage."""
        sets = {name: pipelines[name] for name in ("validation", "test") if name in pipelines}
        callbacks = [SplitVerification(self, sets)]
        if "validation" in sets:
            return Monitoring("val_validation_auc_cosine", "max", callbacks)
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

    def layout(self) -> str:
        partial = (f", Partial FC at sample rate {self.config.model.loss_kwargs['sample_rate']}"
                   if self.partial_fc else "")
        head = f" -> {self.config.model.loss} head ({self.num_train_classes} identities{partial})" \
            if self.head_name else f" -> {self.config.model.loss} loss"
        return (f"1 image -> {self.config.model.backbone} -> embedding {self.config.model.embedding_dim}"
                f"{head}")


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
