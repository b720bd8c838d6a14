"""PairSetEvaluation inside model.fit: its figures reach History and the CSV log."""

import csv
import math

import cv2
import keras
import numpy as np
import pytest

from kerasface.eval import callback as callback_module
from kerasface.eval.callback import PairSetEvaluation, metric_prefix
from kerasface.eval.pairs import PairSet

COLOURS = [(220, 40, 40), (40, 220, 40), (40, 40, 220), (220, 220, 40)]


@pytest.fixture
def colour_pairs(tmp_path):
    """Two images per identity of one colour each; 12 same and 12 different pairs."""
    rng = np.random.default_rng(0)
    paths = {}
    for person, colour in enumerate(COLOURS):
        for k in range(2):
            image = np.clip(np.array(colour) + rng.normal(0, 8, (20, 24, 3)), 0, 255).astype(np.uint8)
            paths[person, k] = str(tmp_path / f"p{person}_{k}.png")
            cv2.imwrite(paths[person, k], image[..., ::-1])
    images, issame = [], []
    for round_ in range(3):
        for person in range(4):
            images += [paths[person, 0], paths[person, 1]]
            other = (person + 1 + round_) % 4 if (person + 1 + round_) % 4 != person else (person + 2) % 4
            images += [paths[person, round_ % 2], paths[other, 0]]
            issame += [True, False]
    return PairSet("colour-set", images, np.array(issame), np.repeat(np.arange(4), 6))


def colour_model():
    keras.utils.set_random_seed(1)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    embedding = keras.layers.Dense(3, name="embedding", kernel_initializer="identity")(x)
    outputs = keras.layers.Dense(4, activation="softmax")(embedding)
    model = keras.Model(inputs, outputs)
    model.compile("sgd", "sparse_categorical_crossentropy")
    return model


@pytest.mark.backend
def test_figures_reach_history_and_csv_and_images_are_decoded_once(colour_pairs, tmp_path, monkeypatch):
    calls = []
    decode = callback_module.decode_images
    monkeypatch.setattr(callback_module, "decode_images", lambda *a, **k: calls.append(1) or decode(*a, **k))
    model = colour_model()
    evaluation = PairSetEvaluation(
        {colour_pairs.name: colour_pairs},
        embedding_model=lambda m: keras.Model(m.inputs, m.get_layer("embedding").output),
        every=2, batch_size=5, flip=True, resize_mode="stretch")
    x = np.random.default_rng(0).uniform(0, 255, (8, 16, 16, 3)).astype("float32")
    y = np.arange(8) % 4
    log = tmp_path / "history.csv"
    history = model.fit(x, y, epochs=3, batch_size=4, verbose=0,
                        callbacks=[evaluation, keras.callbacks.CSVLogger(str(log))])
    prefix = metric_prefix(colour_pairs.name)
    assert prefix == "val_colour_set_"
    names = [prefix + k for k in ("accuracy", "accuracy_std", "auc_cosine", "auc_euclidean", "eer")]
    assert evaluation.metric_names() == names  # 12 different pairs: no TAR@FAR=1e-3
    accuracy = history.history[prefix + "accuracy"]
    assert len(accuracy) == 3 and math.isnan(accuracy[0])  # epoch 1 is not due with every=2
    assert accuracy[1] == 1.0 and accuracy[2] == 1.0  # epoch 2 (every) and 3 (the last)
    assert history.history[prefix + "auc_cosine"][2] == 1.0
    assert len(calls) == 1
    with open(log) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 and float(rows[2][prefix + "auc_cosine"]) == 1.0 and set(names) <= set(rows[0])


def test_training_model_itself_and_tar_at_far_key(colour_pairs):
    many = PairSet("many", colour_pairs.images * 100, np.tile(colour_pairs.issame, 100),
                   np.repeat(np.arange(10), 240))
    evaluation = PairSetEvaluation({"lfw": many}, every=5, resize_mode="stretch")
    assert evaluation.metric_names()[-1] == "val_lfw_tar_at_far_1e-3"  # 1,200 different pairs
    model = colour_model()
    x = np.zeros((4, 16, 16, 3), "float32")
    history = model.fit(x, np.arange(4), epochs=1, verbose=0, callbacks=[evaluation])
    figures = {k: v for k, v in history.history.items() if k.startswith("val_lfw_")}
    assert set(figures) == set(evaluation.metric_names())  # the last epoch is evaluated, every=5 or not
    assert 0.0 <= figures["val_lfw_accuracy"][0] <= 1.0
    with pytest.raises(ValueError, match="every must be >= 1"):
        PairSetEvaluation({"lfw": many}, every=0)
