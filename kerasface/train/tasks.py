"""What a run learns, as plugins of the one trainer (``kerasface.train.run.train``).

A task owns its settings (``config_cls``: a section of the run's config named as the task, and
``add_arguments``: their flags), its model, how labels reach it, its sampler, loss and metrics,
its evaluation of a split, its report fields and its own callbacks; the trainer owns what every
task shares (runtime, checkpoints, resume, history, report). Tasks are chosen by name from ``TASKS``; a
task registers itself when its module is imported, and ``TASKS`` imports ``kerasface.train.<name>``
for a name not registered yet (``recognition``, ``multitask``). This module's tasks:

- ``attributes``: multi-label attributes from CSV label columns (one sigmoid per output,
  binary cross-entropy, binary accuracy and per-label ROC AUC);
- ``identity``: closed-set identity classification (softmax over the training identities,
  sparse cross-entropy, top-1 and top-5 accuracy).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import keras
import numpy as np

from kerasface.data.crops import VIEW_NAMES
from kerasface.data.spec import DatasetSpec, Samples
from kerasface.errors import BadInputError
from kerasface.models import build_branch_model, init_branches_from, seed_preset
from kerasface.registry import TASKS
from kerasface.saving import run_model_file
from kerasface.train.config import TrainConfig
from kerasface.train.predict import predict_split


@dataclasses.dataclass
class Monitoring:
    """What picks a run's best checkpoint: the logged metric ``monitor``, better when ``mode`` is
    "min" or "max", and the task's ``callbacks`` that log it; they run before checkpointing, CSV
    logging and early stopping."""

    monitor: str
    mode: str
    callbacks: list = dataclasses.field(default_factory=list)


class Task:
    """Base class: a multi-branch classifier over ``config.data.views``.

    Subclasses set ``name``, ``summary`` (a line for ``--task``'s help), ``target`` (the record
    field that becomes y: "labels" or "identity"), ``output_activation``, and the loss and
    metrics. A task with settings of its own sets ``config_cls``, a dataclass: a run keeps them
    in ``config.task_config`` (``self.task_config``), saved as the config section named as the
    task; ``add_arguments`` adds their flags (a flag's dest names the field it sets)."""

    name = "task"
    summary = ""
    target = "labels"
    output_activation = "sigmoid"
    config_cls: type | None = None

    def __init__(self, config: TrainConfig, spec: DatasetSpec):
        self.config = config
        self.task_config = config.task_config
        self.spec = spec
        self.steps_per_epoch: int | None = None  # the trainer's, set before build_model

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Add the flags of the task's own settings to a training command's ``parser`` (defaults
        None, so that a config file can fill them)."""

    # what the task is trained on
    @property
    def output_names(self) -> list[str]:
        raise NotImplementedError

    @property
    def num_outputs(self) -> int:
        return len(self.output_names)

    @classmethod
    def check_config(cls, config: TrainConfig) -> None:
        """Refuse settings this task cannot train, before any data is read."""
        if config.model.head == "embedding":
            raise ValueError(
                "head 'embedding' gives L2-normalised embeddings, which train with a metric-learning "
                f"loss (triplet, ArcFace, ...), not with the {cls.name} task; build it with --dry-run, "
                "or train with --head concat or vote")

    @classmethod
    def needs_test_split(cls, config: TrainConfig) -> bool:
        """Whether a run needs a test split (``--test-fraction`` > 0) for its results."""
        return True

    def check_data(self, splits: dict[str, Samples]) -> None:
        """Refuse data this task cannot learn from, naming the file and the fix."""

    # how data reaches the model
    def sampler(self) -> tuple[int, int] | None:
        """None for shuffled batches, or (P, K) for P x K identity batches."""
        data = self.config.data
        return (data.pk_identities, data.pk_images) if data.sampler == "pk" else None

    def model_io(self, x, y):
        """(model inputs, targets) of a batch; a margin head takes ``((images, labels), labels)``."""
        return x, y

    def validation_data(self, pipelines: dict):
        """What ``fit`` validates on (None when the task validates in its own callbacks)."""
        return pipelines.get("validation")

    def monitoring(self, run_dir: Path, pipelines: dict) -> Monitoring:
        """The logged metric that picks the best checkpoint, with the task's callbacks that log it
        (``fit`` logs ``val_loss`` of ``validation_data``)."""
        return Monitoring("val_loss" if self.validation_data(pipelines) is not None else "loss", "min")

    def best_epoch_results(self, history: dict[str, list[float]], best_epoch: int) -> dict[str, dict[str, float]]:
        """Figures the task's callbacks logged, as ``results`` sections of the best epoch (set -> figures)."""
        return {}

    def inference_model(self, model: keras.Model) -> keras.Model:
        """The model a run saves as ``model.keras`` and exports (a margin head is left behind)."""
        return model

    def extra_models(self, model: keras.Model) -> dict[str, keras.Model]:
        """Further models a run saves beside ``model.keras`` (file name -> model)."""
        return {}

    # the model
    def build_model(self) -> keras.Model:
        return build_branch_network(self.config, self.num_outputs, self.output_activation)

    def loss(self) -> keras.losses.Loss:
        raise NotImplementedError

    def loss_weights(self) -> dict[str, float] | None:
        """Per output, its weight in the total loss (None: one output, or all weigh 1)."""
        return None

    def metrics(self) -> list:
        raise NotImplementedError

    # evaluation and report
    def evaluate(self, model: keras.Model, dataset) -> tuple[dict[str, float], dict]:
        """Loss and metrics of ``model`` over a whole split from one predict pass, and the
        report fields of that split."""
        y_true, y_score = predict_split(model, dataset)
        return self.score(y_true, y_score), self.report_fields(y_true, y_score)

    def score(self, y_true: np.ndarray, y_score: np.ndarray) -> dict[str, float]:
        """The task's loss and metrics over a split's targets and scores."""
        results = {"loss": float(self.loss()(y_true, y_score))}
        for metric in self.metrics():
            metric.update_state(y_true, y_score)
            results[metric.name] = float(metric.result())
        return results

    def report_fields(self, y_true: np.ndarray, y_score: np.ndarray) -> dict:
        return {}

    def report_sections(self, history: dict[str, list[float]]) -> list[dict]:
        """Extra sections of report.md (``{"title", "text"}``) from the run's history."""
        return []

    def layout(self) -> str:
        return layout_text(self.config, self.num_outputs, self.output_activation)


@TASKS.register("attributes")
class AttributesTask(Task):
    name = "attributes"
    summary = "multi-label attribute classification from CSV label columns"
    target = "labels"
    output_activation = "sigmoid"

    @property
    def output_names(self) -> list[str]:
        return self.spec.label_names

    def check_data(self, splits):
        if not self.spec.num_labels:
            raise BadInputError(
                f"{self.spec.source}: no attribute label columns; the attributes task needs a CSV with a "
                "'path' column and label columns (or a folder holding attributes.csv); to classify the "
                "identities of an image folder use --task identity")
        if np.isnan(self.spec.samples.labels).any():
            raise BadInputError(
                f"{self.spec.source}: some attribute values are missing (empty cells); the attributes task "
                "needs every value: fill them in, or train the multitask task, which leaves missing values out")
        single = {c: v for c, v in self.spec.label_columns.items() if len(v) < 2}
        if single:
            column, values = next(iter(single.items()))
            raise BadInputError(
                f"{self.spec.source}: label column {column!r} holds one value only ({values[0]!r}); an "
                "attribute needs at least two values to learn; drop the column or add examples of the others")

    def loss(self):
        return keras.losses.BinaryCrossentropy()

    def metrics(self):
        return [keras.metrics.BinaryAccuracy(name="binary_accuracy"),
                keras.metrics.AUC(name="auc", multi_label=True, num_labels=self.num_outputs)]

    def score(self, y_true, y_score):
        """Loss and metrics, and per attribute column the AUC as the seed notes report it
        (``auc_<column>``: one-vs-rest macro AUC for a column of several values)."""
        from kerasface.eval.attributes import attribute_metrics

        results = super().score(y_true, y_score)
        metrics = attribute_metrics(y_true, y_score, self.spec.label_columns)
        results.update({f"auc_{column}": auc for column, auc in metrics.column_auc.items()})
        if metrics.mean_auc is not None:
            results["mean_column_auc"] = metrics.mean_auc
        return results

    def report_fields(self, y_true, y_score):
        return {"roc": {label: (y_true[:, j], y_score[:, j]) for j, label in enumerate(self.output_names)}}


@TASKS.register("identity")
class IdentityTask(Task):
    name = "identity"
    summary = "closed-set identity classification"
    target = "identity"
    output_activation = "softmax"

    @property
    def output_names(self) -> list[str]:
        return self.spec.class_names

    def check_data(self, splits):
        if self.config.data.split == "identity":
            raise ValueError(
                "--split identity puts different identities in the training and test splits, so a "
                "classifier over the training identities scores 0 accuracy on the test split by "
                "construction; use --split sample for identity classification (open-set verification "
                "on unseen identities belongs to the recognition task)")
        if (self.spec.samples.identity < 0).any():
            raise BadInputError(f"{self.spec.source}: some samples have no identity; the identity task "
                                "needs an identity per image (image sub-folders, or an 'identity' CSV column)")
        if self.spec.num_classes < 2:
            raise BadInputError(
                f"{self.spec.source}: one identity only ({self.spec.class_names[:1]}); identity "
                "classification needs at least two identity folders")

    def loss(self):
        return keras.losses.SparseCategoricalCrossentropy()

    def metrics(self):
        return [keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
                keras.metrics.SparseTopKCategoricalAccuracy(k=min(5, self.num_outputs), name="top5_accuracy")]


def task_class(name: str) -> type[Task]:
    """The task registered as ``name``, in this module or in ``kerasface.train.<name>``."""
    return TASKS.get(name)


def create_task(config: TrainConfig, spec: DatasetSpec) -> Task:
    return task_class(config.task)(config, spec)


def build_branch_network(config: TrainConfig, num_outputs: int, output_activation: str) -> keras.Model:
    """The multi-branch model of ``config.model`` over ``config.data.views``."""
    model_config, data = config.model, config.data
    shape = (data.image_size, data.image_size, 3)
    branches = data.num_views
    if model_config.preset == "paper":
        kwargs = seed_preset(model_config.backbone, shape)
        kwargs.update(num_outputs=num_outputs, output_activation=output_activation, num_branches=branches)
    else:
        kwargs = dict(backbone=model_config.backbone, num_branches=branches, head=model_config.head,
                      num_outputs=num_outputs, input_shape=shape, backbone_kwargs=model_config.backbone_kwargs,
                      output_activation=output_activation, vote=model_config.vote)
    model = build_branch_model(
        **kwargs, shared_weights=model_config.shared_weights, frozen_branches=model_config.freeze_branches,
        input_names=VIEW_NAMES[data.views] if branches > 1 else None,
    )
    if model_config.init_branches:
        init_branches_from(model, str(run_model_file(model_config.init_branches)))
    if model_config.bn_momentum is not None:
        set_batchnorm_momentum(model, model_config.bn_momentum)
    return model


def set_batchnorm_momentum(model: keras.Model, momentum: float) -> int:
    """Set the moving-average momentum of every BatchNormalization layer, nested ones included."""
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"batch-norm momentum must lie in [0, 1), got {momentum}")

    def walk(layer):
        for child in getattr(layer, "layers", []):
            yield child
            yield from walk(child)

    layers = [l for l in walk(model) if isinstance(l, keras.layers.BatchNormalization)]
    for layer in layers:
        layer.momentum = momentum
    return len(layers)


def layout_text(config: TrainConfig, num_outputs: int, output_activation: str) -> str:
    model_config, n = config.model, config.data.num_views
    inputs = f"{n} images" if n > 1 else "1 image"
    branch = f"{n}x {model_config.backbone}" if n > 1 else model_config.backbone
    branch += " (include_top)" if model_config.preset == "paper" else " (pooled)"
    head = {"concat": "concat -> Dense 256 ReLU", "vote": f"vote ({model_config.vote})",
            "embedding": "concat -> Dense -> L2"}.get(model_config.head, model_config.head)
    return f"{inputs} -> {branch} -> {head} -> Dense {num_outputs} {output_activation}"
