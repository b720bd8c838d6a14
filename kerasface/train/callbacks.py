"""Training hooks: resumable checkpoints and the standard Keras callbacks a run uses."""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path

import keras
import numpy as np

from kerasface.fileio import atomic_path, link_or_copy_atomic, write_json_atomic

STATE_FILE = "state.json"


def save_model_atomic(model: keras.Model, path) -> None:
    with atomic_path(path) as tmp:
        model.save(tmp)


class RunCheckpoint(keras.callbacks.Callback):
    """After every epoch: ``last.keras`` (model and optimizer state), ``best.keras`` when
    ``monitor`` improves, and ``state.json`` with the number of finished epochs, each written
    to a temporary file and renamed, so an interruption never leaves a half-written checkpoint.
    An epoch whose loss or weights are NaN or infinite is not saved: training stops and
    ``state.json`` says why (``stopped``). ``command``, when given, is kept in ``state.json``:
    the training command that started the run."""

    def __init__(self, directory, monitor: str = "val_loss", mode: str = "min", command: str | None = None):
        super().__init__()
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.directory = Path(directory)
        self.monitor = monitor
        self.mode = mode
        self.state = read_run_state(self.directory) or {"epoch": 0, "best": None, "best_epoch": None}
        if command:
            self.state.setdefault("command", command)

    def _improved(self, value: float) -> bool:
        best = self.state.get("best")
        if value is None or math.isnan(value):
            return False
        return best is None or (value < best if self.mode == "min" else value > best)

    def _non_finite(self, logs) -> str | None:
        loss = logs.get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            return f"the training loss is {float(loss)}"
        for weight in self.model.weights:
            if not np.isfinite(keras.ops.convert_to_numpy(weight)).all():
                return f"weight {weight.path} holds NaN or infinite values"
        return None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.monitor not in logs:
            raise ValueError(f"{self.directory}: epoch {epoch + 1} logged no {self.monitor!r}, the metric that picks "
                             f"the best checkpoint; it logged {sorted(logs)}")
        self.directory.mkdir(parents=True, exist_ok=True)
        problem = self._non_finite(logs)
        if problem:
            self.state["stopped"] = (f"epoch {epoch + 1} diverged ({problem}): its weights were not saved "
                                     f"and training stopped; the checkpoints hold epoch {self.state['epoch']}")
            self.model.stop_training = True
            write_json_atomic(self.directory / STATE_FILE, self.state)
            return
        save_model_atomic(self.model, self.directory / "last.keras")
        self.state.pop("stopped", None)
        value = logs.get(self.monitor)
        value = None if value is None else float(value)
        if self._improved(value):
            link_or_copy_atomic(self.directory / "last.keras", self.directory / "best.keras")
            self.state.update(best=value, best_epoch=epoch + 1)
        self.state.update(epoch=epoch + 1, monitor=self.monitor, mode=self.mode)
        write_json_atomic(self.directory / STATE_FILE, self.state)


def read_run_state(directory, default=None) -> dict | None:
    path = Path(directory) / STATE_FILE
    if not path.is_file():
        return default
    try:
        return json.loads(path.read_text())
    except ValueError as error:
        raise ValueError(f"{path}: unreadable checkpoint state ({error})") from error


def standard_callbacks(run_dir, monitor: str, mode: str, early_stopping: int | None,
                       tensorboard: bool = True, resume: bool = False, command: str | None = None) -> list:
    run_dir = Path(run_dir)
    callbacks = [
        keras.callbacks.TerminateOnNaN(),
        RunCheckpoint(run_dir / "checkpoints", monitor=monitor, mode=mode, command=command),
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=resume),
    ]
    if tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(str(run_dir / "tensorboard"), write_graph=False))
    if early_stopping:
        callbacks.append(keras.callbacks.EarlyStopping(monitor=monitor, mode=mode,
                                                       patience=early_stopping, restore_best_weights=False))
    return callbacks


class FreezeLayer(keras.callbacks.Callback):
    """``layer`` of the model (its weights and batch-norm statistics) stays fixed for the first
    ``epochs`` epochs, then trains with the rest. At each change the optimizer is rebuilt for the
    new trainable weights, keeping its step count (a learning-rate schedule goes on) and its
    slots' fresh start, and the train step is traced again; on JAX too, whose fit reads the
    trainable weights anew at each epoch."""

    def __init__(self, layer: str, epochs: int):
        super().__init__()
        self.layer, self.epochs = layer, epochs

    def on_epoch_begin(self, epoch, logs=None):
        layer = self.model.get_layer(self.layer)
        trainable = epoch >= self.epochs
        if layer.trainable != trainable:
            layer.trainable = trainable
            rebuild_optimizer(self.model)


def rebuild_optimizer(model: keras.Model) -> None:
    """A new optimizer of the same configuration and step count for ``model``'s trainable weights."""
    old = model.optimizer
    new = old.__class__.from_config(old.get_config())
    scope = getattr(model, "distribute_strategy", None)
    with scope.scope() if scope is not None else contextlib.nullcontext():
        new.build(model.trainable_variables)
    new.iterations.assign(old.iterations)
    model.optimizer = new
    model.make_train_function(force=True)
