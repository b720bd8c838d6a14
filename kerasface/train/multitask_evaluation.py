"""The multitask task's per-epoch evaluation: Keras' per-output log names renamed to the
multi-task table's, the figures of each evaluation set logged, and the epoch's table printed."""

from __future__ import annotations

import keras

from kerasface.models.multitask import predictor_model
from kerasface.report.multitask import multitask_epoch_table
from kerasface.train.predict import predict_all

RENAMED = ("loss", "auc", "accuracy")  # Keras' "<output>_<name>" -> the table's "<name>_<output>"


class MultitaskEvaluation(keras.callbacks.Callback):
    """At each epoch's end: Keras' per-output names in ``logs`` renamed to the
    multi-task table's (``id_loss`` -> ``loss_id``, ``gender_auc`` -> ``auc_gender``, ``da_gender_loss`` ->
    ``loss_da_gender``), then the figures of each evaluation set: ``train`` (identity AUCs only,
    unprefixed), ``validation`` and ``test`` (every figure, as ``val_<set>_<figure>``); then the
    multi-task table of the epoch is printed. Runs before checkpointing and CSV logging."""

    def __init__(self, task, sets: dict, printer=print):
        super().__init__()
        self.task = task
        self.sets = sets
        self.printer = printer
        self._predictor = None

    def rename(self, logs: dict) -> None:
        for key in sorted(self.task.output_keys(), key=len, reverse=True):
            for suffix in RENAMED:
                if f"{key}_{suffix}" in logs:
                    logs[f"{suffix}_{key}"] = logs.pop(f"{key}_{suffix}")

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        self.rename(logs)
        if self._predictor is None:
            self._predictor = predictor_model(self.model)
        for name, dataset in self.sets.items():
            figures = self.task.split_figures(*predict_all(self._predictor, dataset))
            if name == "train":
                logs.update({k: v for k, v in figures.items() if k in ("auc_id_cosine", "auc_id_euclidean")})
            else:
                logs.update({f"val_{name}_{k}": v for k, v in figures.items()})
        total = (self.params or {}).get("epochs") or "?"
        grid = multitask_epoch_table(logs, self.task.attributes, self.task.adversary_heads)
        self.printer(f"Epoch {epoch + 1}/{total} (multi-task table)\n{grid}")
