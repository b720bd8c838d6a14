"""A task's predictions over a split's pipeline, in one predict pass of whole batches."""

from __future__ import annotations

import keras
import numpy as np

from kerasface.models.multitask import ID_OUTPUT

IDENTITY = "identity"


def predict_padded(model: keras.Model, batches):
    """``(x, y, outputs)`` per ``(x, y)`` of ``batches``; a short last batch is padded to the first
    batch's size so that the predict function is traced once (and splits evenly across
    replicas), and its outputs leave the padding out. Nested inputs (``((views, labels), labels)``
    from ``Task.model_io``) reach the model flattened."""
    full = None
    for x, y in batches:
        views = [np.asarray(v) for v in keras.tree.flatten(x)]
        n = int(views[0].shape[0])
        full = full or n
        if n < full:
            views = [np.concatenate([v, np.zeros((full - n, *v.shape[1:]), v.dtype)]) for v in views]
        outputs = model.predict_on_batch(views if len(views) > 1 else views[0])
        yield x, y, keras.tree.map_structure(lambda v, n=n: np.asarray(v, np.float32)[:n], outputs)


def predict_split(model: keras.Model, dataset) -> tuple[np.ndarray, np.ndarray]:
    """Targets and scores of every batch of ``dataset``."""
    ys, scores = [], []
    for _, y, score in predict_padded(model, dataset):
        scores.append(score)
        ys.append(np.asarray(y))
    return np.concatenate(ys), np.concatenate(scores)


def predict_all(predictor: keras.Model, dataset) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(targets, outputs) of a multi-output model over a pipeline of ``Task.model_io`` batches, the
    targets with the samples' ``IDENTITY`` (a margin head's input; its target may be Partial FC's
    zeros)."""
    images = ((x[0], (x[1], y)) if isinstance(x, (tuple, list)) else (x, (y[ID_OUTPUT], y)) for x, y in dataset)
    targets, outputs = {}, {}
    for _, (identity, y), output in predict_padded(predictor, images):
        targets.setdefault(IDENTITY, []).append(np.asarray(identity))
        for key, value in output.items():
            outputs.setdefault(key, []).append(value)
        for key, value in y.items():
            targets.setdefault(key, []).append(np.asarray(value))
    return ({k: np.concatenate(v) for k, v in targets.items()}, {k: np.concatenate(v) for k, v in outputs.items()})
