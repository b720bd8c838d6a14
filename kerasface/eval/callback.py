"""Verification on pair sets during training, as a Keras callback.

Every ``every`` epochs and at the last epoch, each pair set is embedded and evaluated with the
10-fold protocol (``kerasface.eval.verification.evaluate``); the figures go into the epoch's
``logs`` as ``val_<set>_accuracy``, ``val_<set>_accuracy_std``, ``val_<set>_auc_cosine``,
``val_<set>_auc_euclidean``, ``val_<set>_eer`` and ``val_<set>_tar_at_far_1e-3`` (when the set
has >= 1,000 different-person pairs), so History, CSV logging, checkpoint monitors, TensorBoard
and the report see them when this callback runs before those (a task's ``callbacks``). Epochs
that are not evaluated log NaN under the same names, so every row of a CSV log has the same
columns (a checkpoint monitor skips NaN; early stopping on these needs ``patience >= every``).

The images of a set are decoded and resized once, on first use, and kept as uint8 arrays (a
quarter of float32's memory; resized pixels are rounded to whole grey levels). The model is
called with ``predict_on_batch`` on NumPy batches, so the callback works on every backend.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

import keras
import numpy as np

from kerasface.eval.embeddings import EmbeddingModel, decode_images, embed_batches, keras_embedding_model
from kerasface.eval.pairs import PairSet
from kerasface.eval.verification import VerificationResult, evaluate, far_key

LOGGED_FAR = 1e-3


def metric_prefix(set_name: str) -> str:
    """``val_<set>_`` with the set's name reduced to letters, digits and underscores."""
    return f"val_{re.sub(r'[^0-9A-Za-z_]+', '_', set_name).strip('_') or 'pairs'}_"


def logged_figures(set_name: str, result: VerificationResult) -> dict[str, float]:
    """The figures a run logs of one verification set (``val_<set>_accuracy``, ...; see above)."""
    prefix = metric_prefix(set_name)
    figures = {
        prefix + "accuracy": result.accuracy, prefix + "accuracy_std": result.accuracy_std,
        prefix + "auc_cosine": result.auc_cosine, prefix + "auc_euclidean": result.auc_euclidean,
        prefix + "eer": result.eer,
    }  # fmt: skip
    tar = result.tar_at_far.get(far_key(LOGGED_FAR))
    if tar is not None:
        figures[prefix + f"tar_at_far_{far_key(LOGGED_FAR)}"] = tar
    return figures


class PairSetEvaluation(keras.callbacks.Callback):
    """Log verification figures of ``pair_sets`` (name -> PairSet) at the end of epochs.

    embedding_model: a keras.Model, a callable ``training model -> keras.Model`` (such as the
    embedding layer's sub-model), or None for the training model itself. ``image_size`` is needed
    only when that model accepts any size; ``resize_mode`` defaults to the one the model records.
    """

    def __init__(self, pair_sets: Mapping[str, PairSet], embedding_model: keras.Model | Callable | None = None,
                 every: int = 1, batch_size: int = 64, flip: bool = False, image_size=None,
                 resize_mode: str | None = None):
        super().__init__()
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.pair_sets = dict(pair_sets)
        self.embedding_model = embedding_model
        self.every = int(every)
        self.batch_size = int(batch_size)
        self.flip = flip
        self.image_size = image_size
        self.resize_mode = resize_mode
        self._embedder: EmbeddingModel | None = None
        self._images: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.results: dict[int, dict] = {}

    def _embedding(self) -> EmbeddingModel:
        if self._embedder is None:
            source = self.embedding_model
            if source is None:
                model = self.model
            elif isinstance(source, keras.Model):
                model = source
            elif callable(source):
                model = source(self.model)
            else:
                raise TypeError(
                    f"embedding_model must be a keras.Model, a callable or None, not {type(source).__name__}")
            self._embedder = keras_embedding_model(model, image_size=self.image_size, resize_mode=self.resize_mode)
        return self._embedder

    def _cached(self, name: str, model: EmbeddingModel) -> tuple[np.ndarray, np.ndarray]:
        if name not in self._images:
            self._images[name] = decode_images(self.pair_sets[name].images, model.image_size, model.resize_mode,
                                               self.batch_size, model=model.name)
        return self._images[name]

    def _due(self, epoch: int) -> bool:
        return (epoch + 1) % self.every == 0 or epoch + 1 == (self.params or {}).get("epochs")

    def metric_names(self) -> list[str]:
        """The names this callback logs, in order."""
        names = []
        for name, pair_set in self.pair_sets.items():
            prefix = metric_prefix(name)
            names += [prefix + k for k in ("accuracy", "accuracy_std", "auc_cosine", "auc_euclidean", "eer")]
            if (~pair_set.issame).sum() * LOGGED_FAR >= 1 - 1e-9:
                names.append(prefix + f"tar_at_far_{far_key(LOGGED_FAR)}")
        return names

    def evaluate_sets(self) -> dict[str, float]:
        """The logged figures of every set for the model as it is now."""
        model = self._embedding()
        figures = {}
        for name, pair_set in self.pair_sets.items():
            images, inverse = self._cached(name, model)
            batches = (images[i:i + self.batch_size] for i in range(0, len(images), self.batch_size))
            vectors = embed_batches(model, batches, len(images), self.batch_size, flip=self.flip,
                                    progress=False)[inverse]
            figures.update(logged_figures(name, evaluate(vectors[0::2], vectors[1::2], pair_set.issame,
                                                         pair_set.folds)))
        return figures

    def on_epoch_end(self, epoch, logs=None):
        if self._due(epoch):
            figures = self.evaluate_sets()
            self.results[epoch] = figures
        else:
            figures = dict.fromkeys(self.metric_names(), float("nan"))
        if logs is not None:
            logs.update(figures)
