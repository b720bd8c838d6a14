"""What a run learns: its target, output layer, loss and metrics, chosen from the data.

attributes: the multi-label task (one sigmoid per label output, binary cross-entropy, binary
accuracy and per-label AUC), for CSV data with label columns;
identity: closed-set classification of identities (softmax, sparse cross-entropy, top-1 and
top-5 accuracy), for image folders without labels.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import keras

from kerasface.data.spec import DatasetSpec


@dataclasses.dataclass
class Task:
    name: str
    target: str
    num_outputs: int
    output_activation: str
    output_names: list[str]
    loss: Callable[[], keras.losses.Loss]
    metrics: Callable[[], list]
    monitor: str = "val_loss"
    mode: str = "min"


def attribute_task(spec: DatasetSpec) -> Task:
    num = spec.num_labels
    return Task(
        name="attributes",
        target="labels",
        num_outputs=num,
        output_activation="sigmoid",
        output_names=spec.label_names,
        loss=lambda: keras.losses.BinaryCrossentropy(),
        metrics=lambda: [
            keras.metrics.BinaryAccuracy(name="binary_accuracy"),
            keras.metrics.AUC(name="auc", multi_label=True, num_labels=num),
        ],
    )


def identity_task(spec: DatasetSpec) -> Task:
    return Task(
        name="identity",
        target="identity",
        num_outputs=spec.num_classes,
        output_activation="softmax",
        output_names=spec.class_names,
        loss=lambda: keras.losses.SparseCategoricalCrossentropy(),
        metrics=lambda: [
            keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
            keras.metrics.SparseTopKCategoricalAccuracy(k=min(5, spec.num_classes), name="top5_accuracy"),
        ],
    )


def task_for(spec: DatasetSpec) -> Task:
    return attribute_task(spec) if spec.num_labels else identity_task(spec)
