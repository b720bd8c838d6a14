"""Multi-task attributes with adversarial identity disentanglement (the multi-task task).

The gradient-reversal layer's sign and scale on TensorFlow and JAX, missing attribute values
masked out of losses and AUCs, the multi-task table's rows, export of both models, and a short demo
run that learns identity and attributes.
"""

import json
import math

import keras
import numpy as np
import pytest

from kerasface.losses.masked import MaskedAUC, MaskedCrossentropy, masked_crossentropy
from kerasface.models.preprocessing import input_preprocessing
from kerasface.models.reversal import GradientReversal, dann_lambda


def gradient_of(fn, x, upstream):
    """d sum(fn(x) * upstream) / dx on the current backend (jit-compiled on JAX)."""
    if keras.backend.backend() == "jax":
        import jax
        import jax.numpy as jnp

        return np.asarray(jax.jit(jax.grad(lambda v: jnp.sum(fn(v) * upstream)))(jnp.asarray(x)))
    import tensorflow as tf

    value = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(value)
        out = tf.reduce_sum(fn(value) * upstream)
    return tape.gradient(out, value).numpy()


@pytest.mark.backend
@pytest.mark.parametrize("lambda_", [1.0, 0.3, 0.0])
def test_gradient_reversal_is_identity_forward_and_minus_lambda_backward(lambda_):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 5)).astype("float32")
    upstream = rng.normal(size=(4, 5)).astype("float32")
    layer = GradientReversal(lambda_)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x)), x)
    grad = gradient_of(lambda v: layer(v, training=True), x, upstream)
    np.testing.assert_allclose(grad, -lambda_ * upstream, rtol=1e-6, atol=1e-7)
    # without the layer the gradient is +upstream: the sign flip is the layer's doing
    np.testing.assert_allclose(gradient_of(lambda v: v * 1.0, x, upstream), upstream, rtol=1e-6)


@pytest.mark.backend
def test_gradient_reversal_inside_a_model_reverses_what_reaches_the_layers_before_it():
    """A Dense layer before the reversal gets the negated gradient of the same model without it."""
    inputs = keras.Input((3,))
    dense = keras.layers.Dense(2, kernel_initializer="ones", name="before")
    reversed_ = keras.Model(inputs, keras.layers.Dense(1, kernel_initializer="ones")(GradientReversal(0.5)(dense(inputs))))
    x = np.array([[1.0, 2.0, 3.0]], "float32")
    if keras.backend.backend() == "jax":
        import jax

        trainable = [v.value for v in reversed_.trainable_variables]
        non_trainable = [v.value for v in reversed_.non_trainable_variables]

        def total(trainable):
            out, _ = reversed_.stateless_call(trainable, non_trainable, x, training=True)
            return out.sum()

        grads = jax.grad(total)(trainable)
        kernel_grad = np.asarray(grads[[v.path for v in reversed_.trainable_variables].index(dense.kernel.path)])
    else:
        import tensorflow as tf

        with tf.GradientTape() as tape:
            out = tf.reduce_sum(reversed_(x, training=True))
        kernel_grad = tape.gradient(out, dense.kernel).numpy()
    # d out / d kernel without reversal: x^T * (ones of the head) -> each column equals x
    np.testing.assert_allclose(kernel_grad, -0.5 * np.repeat(x.T, 2, axis=1), rtol=1e-6)


@pytest.mark.backend
def test_dann_warm_up_goes_from_zero_to_lambda_and_counts_training_steps():
    assert float(dann_lambda(0, 2.0, 100)) == 0.0
    assert float(dann_lambda(50, 2.0, 100)) == pytest.approx(2.0 * (2.0 / (1.0 + math.exp(-5.0)) - 1.0), rel=1e-6)
    assert float(dann_lambda(100, 2.0, 100)) == pytest.approx(2.0 * (2.0 / (1.0 + math.exp(-10.0)) - 1.0), rel=1e-6)
    assert float(dann_lambda(500, 2.0, 100)) == float(dann_lambda(100, 2.0, 100))
    assert float(dann_lambda(0, 0.7, 0)) == pytest.approx(0.7)
    layer = GradientReversal(1.0, warmup_steps=10)
    x = np.ones((2, 3), "float32")
    layer(x, training=False)
    assert float(layer.step) == 0.0
    for _ in range(3):
        layer(x, training=True)
    assert float(layer.step) == 3.0
    upstream = np.ones((2, 3), "float32")
    expected = -float(dann_lambda(3, 1.0, 10)) * upstream
    np.testing.assert_allclose(gradient_of(lambda v: layer(v), x, upstream), expected, rtol=1e-5)
    clone = GradientReversal.from_config(layer.get_config())
    assert (clone.lambda_, clone.warmup_steps, clone.gamma) == (1.0, 10, 10.0)
    with pytest.raises(ValueError, match="lambda_ must be >= 0"):
        GradientReversal(-1.0)


def numpy_masked_crossentropy(y_true, y_pred, class_weights=None):
    """The same loss by hand: rows with a NaN target dropped, then the (weighted) mean."""
    y_true, y_pred = np.asarray(y_true, np.float64), np.clip(np.asarray(y_pred, np.float64), 1e-7, 1 - 1e-7)
    keep = ~np.isnan(y_true).any(axis=1)
    t, p = y_true[keep], y_pred[keep]
    if t.shape[1] == 1:
        ce = -(t[:, 0] * np.log(p[:, 0]) + (1 - t[:, 0]) * np.log(1 - p[:, 0]))
        w = np.ones_like(ce) if class_weights is None else np.where(t[:, 0] == 1, class_weights[1], class_weights[0])
    else:
        ce = -(t * np.log(p)).sum(axis=1)
        w = np.ones_like(ce) if class_weights is None else (t * np.asarray(class_weights)).sum(axis=1)
    return float((w * ce).sum() / w.sum()) if len(ce) else 0.0


@pytest.mark.backend
def test_masked_losses_leave_missing_values_out():
    nan = np.nan
    binary_true = np.array([[1.0], [0.0], [nan], [1.0], [nan]], "float32")
    binary_pred = np.array([[0.9], [0.2], [0.01], [0.4], [0.99]], "float32")
    expected = (-np.log(0.9) - np.log(0.8) - np.log(0.4)) / 3
    assert numpy_masked_crossentropy(binary_true, binary_pred) == pytest.approx(expected, rel=1e-6)
    loss = MaskedCrossentropy()
    assert float(loss(binary_true, binary_pred)) == pytest.approx(expected, rel=1e-5)
    weighted = MaskedCrossentropy(class_weights=[0.5, 2.0])
    assert float(weighted(binary_true, binary_pred)) == pytest.approx(
        numpy_masked_crossentropy(binary_true, binary_pred, [0.5, 2.0]), rel=1e-5)

    onehot_true = np.array([[1, 0, 0], [nan, nan, nan], [0, 0, 1], [0, 1, 0]], "float32")
    softmax = np.array([[0.7, 0.2, 0.1], [0.0, 0.0, 1.0], [0.3, 0.3, 0.4], [0.1, 0.8, 0.1]], "float32")
    expected = (-np.log(0.7) - np.log(0.4) - np.log(0.8)) / 3
    assert float(loss(onehot_true, softmax)) == pytest.approx(expected, rel=1e-5)
    assert float(MaskedCrossentropy(class_weights=[1.0, 3.0, 0.5])(onehot_true, softmax)) == pytest.approx(
        numpy_masked_crossentropy(onehot_true, softmax, [1.0, 3.0, 0.5]), rel=1e-5)
    # a batch without any value gives 0, not NaN; the missing rows' scores do not matter
    assert float(masked_crossentropy(np.full((3, 1), nan, "float32"), np.full((3, 1), 0.5, "float32"))) == 0.0
    moved = softmax.copy()
    moved[1] = [1.0, 0.0, 0.0]
    assert float(loss(onehot_true, moved)) == pytest.approx(float(loss(onehot_true, softmax)), rel=1e-6)
    # against Keras' own losses on the rows that have values
    keep = ~np.isnan(binary_true[:, 0])
    keras_bce = float(keras.losses.BinaryCrossentropy()(binary_true[keep], binary_pred[keep]))
    assert float(loss(binary_true, binary_pred)) == pytest.approx(keras_bce, rel=1e-4)


@pytest.mark.backend
def test_masked_auc_ignores_missing_values():
    from sklearn.metrics import roc_auc_score

    nan = np.nan
    y = np.array([[1.0], [0.0], [nan], [1.0], [0.0], [nan]], "float32")
    s = np.array([[0.8], [0.3], [0.9], [0.35], [0.4], [0.0]], "float32")
    metric = MaskedAUC(num_thresholds=1000)
    metric.update_state(y, s)
    keep = ~np.isnan(y[:, 0])
    assert float(metric.result()) == pytest.approx(roc_auc_score(y[keep, 0], s[keep, 0]), abs=1e-3)
    onehot = np.array([[1, 0, 0], [0, 1, 0], [nan, nan, nan], [0, 0, 1], [0, 1, 0], [1, 0, 0]], "float32")
    scores = np.array([[.6, .3, .1], [.2, .5, .3], [.1, .1, .8], [.3, .3, .4], [.4, .4, .2], [.5, .4, .1]], "float32")
    metric = MaskedAUC(num_thresholds=1000, multi_label=True, num_labels=3)
    metric.update_state(onehot, scores)
    keep = ~np.isnan(onehot[:, 0])
    expected = np.mean([roc_auc_score(onehot[keep, j], scores[keep, j]) for j in range(3)])
    assert float(metric.result()) == pytest.approx(expected, abs=1e-3)


def test_empty_attribute_cells_are_missing_values_when_asked(tmp_path):
    """Without missing_labels an empty cell is a bad row; with it the column's outputs are NaN, the
    column's value is -1, undersampling keeps the row, and the pipeline carries identity and labels."""
    import cv2

    from kerasface.data.balance import undersample
    from kerasface.data.pipeline import InputConfig, build_pipeline
    from kerasface.data.readers import read_csv
    from kerasface.data.spec import column_values
    from kerasface.errors import BadInputError

    rows = [("a", "female", "happy"), ("a", "", "sad"), ("b", "male", ""), ("b", "male", "neutral"),
            ("c", "male", "happy"), ("c", "female", "sad")]
    lines = ["path,identity,gender,emotion"]
    for k, (identity, gender, emotion) in enumerate(rows):
        cv2.imwrite(str(tmp_path / f"{k}.png"), np.full((20, 20, 3), 40 * k, np.uint8))
        lines.append(f"{k}.png,{identity},{gender},{emotion}")
    (tmp_path / "attributes.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(BadInputError, match="empty value in column 'gender'"):
        read_csv(tmp_path / "attributes.csv")
    _, spec = read_csv(tmp_path / "attributes.csv", missing_labels=True)
    assert spec.label_columns == {"gender": ["female", "male"], "emotion": ["happy", "neutral", "sad"]}
    labels = spec.samples.labels
    assert np.isnan(labels[1, 0]) and not np.isnan(labels[1, 1:]).any() and labels[1, 3] == 1.0
    assert np.isnan(labels[2, 1:]).all() and labels[2, 0] == 1.0
    assert np.isfinite(np.delete(labels, [1, 2], axis=0)).all()
    values = column_values(spec.label_columns, labels)
    assert values["gender"].tolist() == [0, -1, 1, 1, 1, 0] and values["emotion"].tolist() == [0, 2, -1, 1, 0, 2]
    kept = undersample(spec, factors={"gender": 3})
    assert len(kept) == 4 and 1 in [list(spec.samples.paths).index(p) for p in kept.paths]

    dataset = build_pipeline(spec, input_config=InputConfig(16, "single"), target="identity_labels", batch_size=6)
    images, (identity, batch_labels) = next(iter(dataset))
    assert images.shape == (6, 16, 16, 3) and identity.numpy().tolist() == [0, 0, 1, 1, 2, 2]
    np.testing.assert_array_equal(np.isnan(batch_labels.numpy()), np.isnan(labels))


# the model, its parts and its table

ATTRIBUTES = ["gender", "emotion", "pose", "facial_hair", "occlusion", "spectacles"]
TINY_VIT = dict(patch_size=8, dim=16, depth=1, heads=2, mlp_dim=32, dim_head=8, dropout=0.0, emb_dropout=0.0)


def test_multitask_table_has_every_row_in_order():
    from kerasface.report.multitask import multitask_table, multitask_table_rows, seed_table, seed_table_rows

    assert (seed_table, seed_table_rows) == (multitask_table, multitask_table_rows)  # deprecated names
    rows = multitask_table_rows(ATTRIBUTES)
    assert rows[:4] == ["loss", "loss_id", "loss_gender", "loss_da_gender"]
    assert rows[2:14] == [f"loss{p}_{a}" for a in ATTRIBUTES for p in ("", "_da")]
    assert rows[14:20] == [f"auc_{a}" for a in ATTRIBUTES]
    assert rows[20:] == ["auc_id_cosine", "auc_id_euclidean"] and len(rows) == 22
    history = {name: [0.5, 0.25] for name in rows}
    history.update({f"val_test_{name}": [0.75, 0.125] for name in rows[2:]})
    table = multitask_table(history, [2], ATTRIBUTES)
    lines = table.splitlines()
    assert lines[0] == "Epoch 2/2" and lines[1].startswith("╒") and "│ Metric" in lines[2] and "│ Test" in lines[2]
    cells = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:4]] for line in lines if line.startswith("│ ")}
    assert [name for name in cells if name != "Metric"] == rows
    assert cells["loss"] == ["0.2500", "-"] and cells["loss_id"] == ["0.2500", "-"]  # no identity loss on test identities
    assert cells["auc_id_euclidean"] == ["0.2500", "0.1250"]


def test_loss_weights_by_group_and_by_output():
    from kerasface.train.multitask import resolve_loss_weights

    both = ["gender", "pose"]
    weights = resolve_loss_weights({"attributes": 2, "da_pose": 0.5, "id": 0.1}, both, both)
    assert weights == {"id": 0.1, "gender": 2.0, "da_gender": 1.0, "pose": 2.0, "da_pose": 0.5}
    assert resolve_loss_weights({"da_pose": 0.5}, both, ["pose"]) == {"id": 1.0, "gender": 1.0, "pose": 1.0,
                                                                         "da_pose": 0.5}
    assert resolve_loss_weights({}, ["gender"], []) == {"id": 1.0, "gender": 1.0}
    with pytest.raises(ValueError, match=r"unknown loss weight\(s\) \['da_age'\]"):
        resolve_loss_weights({"da_age": 1}, ["gender"], ["gender"])
    with pytest.raises(ValueError, match="must be a number >= 0"):
        resolve_loss_weights({"gender": -1}, ["gender"], ["gender"])


@pytest.mark.backend
def test_multitask_model_outputs_parts_and_a_training_step():
    """Outputs per head; identity and attribute models cut out; two fit steps with missing values
    give finite losses, and the reversal's warm-up counter advances once per step."""
    from kerasface.losses.masked import MaskedAUC, MaskedCrossentropy
    from kerasface.models.multitask import attribute_model, build_multitask_model, identity_model, predictor_model

    columns = {"gender": 2, "emotion": 3}
    model = build_multitask_model(columns, 4, backbone="vit", input_shape=(32, 32, 3), embedding_dim=16,
                                  identity_head="normface", reversal_warmup_steps=10, head_units=8,
                                  backbone_kwargs=TINY_VIT)
    assert {k: tuple(v.shape) for k, v in model.output.items()} == {
        "id": (None, 4), "gender": (None, 1), "emotion": (None, 3), "da_gender": (None, 1), "da_emotion": (None, 3)}
    plain = build_multitask_model(columns, 4, backbone="vit", input_shape=(32, 32, 3), embedding_dim=16,
                                  adversarial=False, identity_head=None, backbone_kwargs=TINY_VIT)
    assert sorted(plain.output) == ["emotion", "gender", "id"] and len(plain.inputs) == 1

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    identity = np.array([0, 1, 2, 3, 0, 1, 2, 3], "int32")
    gender = np.array([[0], [1], [np.nan], [1], [0], [1], [0], [np.nan]], "float32")
    emotion = np.eye(3, dtype="float32")[[0, 1, 2, 0, 1, 2, 0, 1]]
    emotion[3] = np.nan
    y = {"id": identity, "gender": gender, "emotion": emotion, "da_gender": gender, "da_emotion": emotion}
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss={"id": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                        **{k: MaskedCrossentropy() for k in ("gender", "emotion", "da_gender", "da_emotion")}},
                  loss_weights={"id": 1.0, "gender": 1.0, "emotion": 1.0, "da_gender": 0.5, "da_emotion": 0.5},
                  metrics={"gender": [MaskedAUC(name="auc")],
                           "emotion": [MaskedAUC(name="auc", multi_label=True, num_labels=3)]})
    history = model.fit((x, identity), y, batch_size=4, epochs=1, verbose=0)
    assert all(np.isfinite(v[-1]) for v in history.history.values()), history.history
    assert float(model.get_layer("gradient_reversal").step) == 2.0

    embedding, scores = identity_model(model)(x), attribute_model(model)(x)
    assert tuple(embedding.shape) == (8, 16) and tuple(scores.shape) == (8, 4)
    outputs = predictor_model(model)(x)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(scores),
                               np.concatenate([keras.ops.convert_to_numpy(outputs[k]) for k in ("gender", "emotion")], 1),
                               atol=1e-6)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(scores)[:, 1:].sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.backend
def test_fast_dense_is_a_dense_layer_whose_weights_move_speed_times_faster_under_adam():
    from kerasface.models.multitask import FastDense

    x = np.random.default_rng(0).normal(size=(4, 3)).astype("float32")
    fast, plain = FastDense(2, speed=10.0), keras.layers.Dense(2)
    fast.build((None, 3))
    plain.build((None, 3))
    plain.kernel.assign(keras.ops.convert_to_numpy(fast.kernel) * 10.0)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(fast(x)), keras.ops.convert_to_numpy(plain(x)), rtol=1e-5)
    effective = []
    for layer in (fast, plain):
        model = keras.Sequential([keras.Input((3,)), layer])
        model.compile(keras.optimizers.Adam(1e-2), "mse")
        before = keras.ops.convert_to_numpy(model(x))
        model.fit(x, np.ones((4, 2), "float32"), epochs=1, batch_size=4, verbose=0)
        effective.append(np.abs(keras.ops.convert_to_numpy(model(x)) - before).mean())
    assert effective[0] > 5 * effective[1]  # the same Adam step moves the fast layer's output ~10x as far
    assert FastDense.from_config(fast.get_config()).speed == 10.0


def partial_fc_task(sample_rate, identities=8):
    """A multitask task over a spec of ``identities`` people (one attribute) with a Partial FC
    NormFace head."""
    from kerasface.data.spec import DatasetSpec, Samples
    from kerasface.train.config import TrainConfig
    from kerasface.train.multitask import MultitaskTask

    samples = Samples(np.array([f"/faces/{i}.png" for i in range(identities)]), np.arange(identities),
                      np.zeros((identities, 1), "float32"))
    spec = DatasetSpec("faces.csv", samples, [str(i) for i in range(identities)], {"gender": ["female", "male"]})
    config = TrainConfig.from_dict(dict(
        task="multitask", split="identity", views="single", backbone="vit", backbone_kwargs=TINY_VIT,
        image_size=32, embedding_dim=16, head_units=8, loss="normface",
        loss_kwargs={"scale": 16.0, "sample_rate": sample_rate}))
    return MultitaskTask(config, spec)


def test_multitask_partial_fc_trains_each_sample_against_its_target_column():
    """Under Partial FC the head's logits hold each sample's target in column 0 (the recognition
    task's targets). At sample rate 1 every class is kept, so the identity loss must equal the
    full head's cross-entropy, computed here in float64; at 0.25 (3 columns) identities above 2
    must train too."""
    import tensorflow as tf

    from kerasface.models.multitask import ID_OUTPUT, predictor_model

    x = tf.constant(np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)), tf.float32)
    identity = tf.constant([7, 6, 5, 2], tf.int64)
    labels = tf.constant([[0.0], [1.0], [1.0], [0.0]])
    for sample_rate in (1.0, 0.25):
        task = partial_fc_task(sample_rate)
        keras.utils.set_random_seed(0)
        model = task.build_model()
        inputs, targets = task.model_io(x, (identity, labels))
        np.testing.assert_array_equal(inputs[1], identity)  # the head picks the target from the identity
        loss = float(task.loss()[ID_OUTPUT](targets[ID_OUTPUT], model(inputs)[ID_OUTPUT]))
        assert np.isfinite(loss)
        if sample_rate == 1.0:
            embeddings = np.asarray(predictor_model(model)(x)["embedding"], np.float64)
            centres = np.asarray(model.get_layer("margin_head").head.centre_columns(), np.float64)
            cos = (embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)) @ (
                centres / np.linalg.norm(centres, axis=0, keepdims=True))
            logits = 16.0 * cos
            top = logits.max(axis=1)
            expected = np.mean(top + np.log(np.exp(logits - top[:, None]).sum(axis=1))
                               - logits[np.arange(4), identity.numpy()])
            assert loss == pytest.approx(expected, rel=1e-5)


class StopAtTrainBegin(keras.callbacks.Callback):
    """Records what ``fit`` was handed (steps per epoch, the reversal's warm-up) and stops."""

    class Stopped(Exception):
        pass

    def on_train_begin(self, logs=None):
        from kerasface.models.multitask import REVERSAL

        self.steps = self.params.get("steps")
        self.warmup_steps = self.model.get_layer(REVERSAL).warmup_steps
        raise self.Stopped


def test_reversal_warmup_lasts_the_configured_epochs_on_several_replicas(tmp_path, monkeypatch):
    """On R replicas an epoch is len(train) // (R * batch) steps of the global batch: a warm-up of
    one epoch must last the epoch's steps, not R times as many (two replicas faked)."""
    import dataclasses

    from kerasface.datasets.demo import DemoConfig, generate_demo_dataset
    from kerasface.train import run
    from kerasface.train.config import TrainConfig

    resolve = run.resolve_runtime
    monkeypatch.setattr(run, "resolve_runtime", lambda *args: dataclasses.replace(resolve(*args), num_replicas=2))
    demo = generate_demo_dataset(tmp_path / "demo", DemoConfig(identities=8, images_per_identity=4, image_size=32,
                                                              photometric=False), progress=False)
    config = TrainConfig.from_dict(dict(
        task="multitask", data=str(demo), split="identity", views="single", missing_labels=True, backbone="vit",
        backbone_kwargs=TINY_VIT, image_size=32, embedding_dim=16, head_units=8, loss="normface", epochs=1,
        batch_size=4, adversary="reversal", reversal_warmup=1.0, test_fraction=0.25, validation_fraction=0.0, augment=False,
        out=str(tmp_path), run_id="mt", tensorboard=False))
    stop = StopAtTrainBegin()
    with pytest.raises(StopAtTrainBegin.Stopped):
        run.train(config, log=lambda *_: None, callbacks=[stop])
    assert stop.steps == 24 // 8 == stop.warmup_steps  # 6 training identities x 4 images, global batch 2 x 4


def test_linear_probe_finds_encoded_attributes_and_skips_missing_values():
    from kerasface.eval.probe import linear_probe

    rng = np.random.default_rng(0)
    n = 400
    gender = rng.integers(0, 2, n)
    emotion = rng.integers(0, 3, n)
    embeddings = rng.normal(size=(n, 16))
    embeddings[:, 0] += 3.0 * (2 * gender - 1)  # gender linearly encoded, emotion not at all
    labels = np.concatenate([gender[:, None], np.eye(3)[emotion]], axis=1).astype("float32")
    labels[::7, 0] = np.nan  # missing values: left out of fitting and scoring
    columns = {"gender": ["female", "male"], "emotion": ["happy", "neutral", "sad"]}
    aucs = linear_probe(embeddings[:300], labels[:300], embeddings[300:], labels[300:], columns)
    assert aucs["gender"] > 0.95 and 0.35 < aucs["emotion"] < 0.65


# a short demo run through the command

@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """pipelines/train_multitask.py on 60 demo identities x 5 images at 32 px (mobilefacenet, 8 epochs,
    NormFace at scale 16, the recognition demo's scale for few identities: at its default 30 the test
    identities' AUC on renderer v5 rose 0.03 at most), identity split 70/30."""
    from kerasface.cli.train_multitask import main
    from kerasface.datasets.demo import DemoConfig, generate_demo_dataset

    root = tmp_path_factory.mktemp("multitask")
    demo = generate_demo_dataset(root / "demo", DemoConfig(identities=60, images_per_identity=5, image_size=40,
                                                          photometric=False), progress=False)
    argv = ["--data", str(demo), "--out", str(root / "runs"), "--run-id", "mt", "--backbone", "mobilefacenet",
            "--image-size", "32", "--embedding-dim", "64", "--loss", "normface", "--epochs", "8", "--batch-size", "16",
            "--validation-fraction", "0", "--no-tensorboard", "--learning-rate", "2e-3",
            "--loss-kwargs", '{"scale": 16}']
    assert main(argv) == 0
    return root / "runs" / "mt"


def test_demo_run_reports_the_multitask_table_every_epoch(demo_run):
    from kerasface.report import load_run_report
    from kerasface.report.multitask import multitask_table_rows

    report = load_run_report(demo_run)
    history = report["history"]
    # the default adversary, the eraser, has no training heads
    assert not any(k.startswith("loss_da_") or "_da_" in k for k in history), sorted(history)
    for name in multitask_table_rows(ATTRIBUTES, []):
        assert len(history[name]) == 8, name  # the Train column of every row, every epoch
        if name not in ("loss", "loss_id"):
            assert len(history[f"val_test_{name}"]) == 8, name
    assert "id_loss" not in history and "gender_auc" not in history  # Keras' names renamed
    section = next(s for s in report["sections"] if s["title"].startswith("Multi-task table"))
    for epoch in range(1, 9):
        assert f"Epoch {epoch}/8" in section["text"]
    md = (demo_run / "report.md").read_text()
    assert "## Multi-task table" in md and "│ loss_spectacles" in md and "│ auc_id_euclidean" in md
    test = report["results"]["test"]
    assert {f"auc_{a}" for a in ATTRIBUTES} | {"auc_id_cosine", "auc_id_euclidean"} <= set(test)
    # by default only the attributes that vary within an identity are erased
    assert report["card"]["task"] == "multitask" and "GradientReversal" not in report["card"]["layout"]
    assert "LEACE eraser of emotion, pose, occlusion, spectacles" in report["card"]["layout"], report["card"]["layout"]
    why = next(s for s in report["sections"] if s["title"] == "Adversaries")["text"]
    assert "none on gender 0.00" in why and "pose 0.9" in why and "Eraser (--adversary eraser)" in why, why


def test_demo_run_erases_the_per_image_attributes_from_the_identity_embedding(demo_run, tmp_path):
    """A fresh linear probe of model.keras (trained on the training split, scored on the test
    identities) no longer reads pose, which the trunk's own embedding gives away, and still reads
    gender, which was not erased; the identity AUC of the results is the erased embedding's, and
    keeps at least half of the trunk's above chance (on these 18 test identities erasure cost
    0.03-0.05 of it; on the multitask benchmark's data it gained 0.018: docs/benchmarks.md)."""
    from kerasface.report import load_run_report
    from kerasface.saving import load_model
    from kerasface.eval.identity import verify_identities
    from kerasface.train.config import load_run_config
    from kerasface.train.data import load_run_data
    from kerasface.train.multitask import MultitaskTask
    from kerasface.train.probe import embed_split, probe_run

    model = load_model(demo_run / "model.keras")
    assert "concept_erasure" in [layer.name for layer in model.layers]
    erased = probe_run(demo_run)["probe_auc"]
    before = keras.Model(model.inputs[0], model.get_layer("concept_erasure").input)  # the trunk's embedding
    before.save(tmp_path / "model.keras")
    for name in ("config.json", "report.json"):
        (tmp_path / name).write_bytes((demo_run / name).read_bytes())
    plain = probe_run(tmp_path)["probe_auc"]
    assert plain["pose"] > 0.8 and erased["pose"] < 0.65, (plain, erased)
    assert np.mean([erased[a] for a in ("emotion", "pose", "occlusion", "spectacles")]) < np.mean(
        [plain[a] for a in ("emotion", "pose", "occlusion", "spectacles")]) - 0.1, (plain, erased)
    assert erased["gender"] > max(plain["gender"] - 0.1, 0.6), (plain, erased)
    report = load_run_report(demo_run)
    config = load_run_config(demo_run)
    data = load_run_data(config, progress=False)
    task = MultitaskTask(config, data.spec)
    task.check_data(data.splits)
    embeddings, _ = embed_split(model, task, data.splits["test"])
    saved, _, _ = verify_identities(data.splits["test"].identity, embeddings, seed=config.seed)
    erased_auc = report["results"]["test"]["auc_id_cosine"]
    assert erased_auc == pytest.approx(saved.auc_cosine, abs=1e-6)
    trunk_auc = report["history"]["val_test_auc_id_cosine"][report["card"]["best_epoch"] - 1]
    assert erased_auc - 0.5 > (trunk_auc - 0.5) / 2, (erased_auc, trunk_auc)


def test_demo_run_beats_the_untrained_model(demo_run):
    """Identity verification of the test identities (never trained on) and the attribute AUCs of the
    test split, trained vs the same model at initialisation (same seed)."""
    from kerasface.data.pipeline import build_pipeline
    from kerasface.models.multitask import predictor_model
    from kerasface.report import load_run_report
    from kerasface.train.config import load_run_config
    from kerasface.train.data import load_run_data
    from kerasface.train.multitask import MultitaskTask
    from kerasface.train.predict import predict_all

    config = load_run_config(demo_run)
    data = load_run_data(config, progress=False)
    task = MultitaskTask(config, data.spec)
    task.check_data(data.splits)
    keras.utils.set_random_seed(config.seed)
    untrained = predictor_model(task.build_model())
    test = build_pipeline(data.spec, data.splits["test"], input_config=config.data.input_config(),
                          target=task.target, batch_size=16).map(task.model_io)
    before = task.split_figures(*predict_all(untrained, test))
    report = load_run_report(demo_run)
    after = report["results"]["test"]
    # the trunk's embedding (the results are the erased one's: test_demo_run_erases_...)
    trunk_auc = report["history"]["val_test_auc_id_cosine"][report["card"]["best_epoch"] - 1]
    assert trunk_auc > before["auc_id_cosine"] + 0.03, (before, trunk_auc)
    # NormFace trains the cosine; euclidean distance of the unnormalised embeddings only has to improve
    # (+0.024 with oneDNN's numerics, about +0.05 without)
    assert after["auc_id_euclidean"] > before["auc_id_euclidean"], (before, after)
    assert after["mean_auc"] > before["mean_auc"] + 0.05, (before, after)
    improved = [a for a in ATTRIBUTES if after[f"auc_{a}"] > before[f"auc_{a}"]]
    assert len(improved) >= 4, (before, after)


def test_demo_run_exports_the_identity_and_attribute_models(demo_run, tmp_path):
    from kerasface.export.run_export import export_run
    from kerasface.saving import load_model

    identity, attributes = load_model(demo_run / "model.keras"), load_model(demo_run / "attributes.keras")
    assert identity.outputs[0].shape[-1] == 64 and len(identity.inputs) == 1
    assert attributes.outputs[0].shape[-1] == 10  # the label vector: gender 1, emotion 3, pose 3, three 0/1 columns
    assert input_preprocessing(identity).resize_mode == input_preprocessing(attributes).resize_mode == "pad"
    for name, model_file in (("identity", "model.keras"), ("attributes", "attributes.keras")):
        differences = export_run(demo_run, tmp_path / name, model_file=model_file, check_images=4)
        assert max(differences.values()) < 1e-4, (name, differences)  # SavedModel in a fresh process = Keras
        assert (tmp_path / name / "saved_model.pb").is_file()
        settings = json.loads((tmp_path / name / "kerasface_input.json").read_text())
        assert settings["preprocessing"]["resize_mode"] == "pad"


def test_within_identity_variation_by_hand():
    """Identity A: values 0 0 1 1 (unbiased Gini 1 - 4/12 = 2/3), B: 0 0 0 0 (0); all eight: 1 -
    (6*5 + 2*1) / (8*7) = 3/7; within = (4 * 2/3 + 4 * 0) / 8 = 1/3; variation (1/3) / (3/7) = 7/9.
    A constant per identity gives 0; an identity with one image or a missing value is left out."""
    from kerasface.eval.attributes import within_identity_variation

    identity = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 1])
    values = np.array([0, 0, 1, 1, 0, 0, 0, 0, 1, -1])
    assert within_identity_variation(identity, values) == pytest.approx(7 / 9)
    assert within_identity_variation(identity[:8], np.array([1, 1, 1, 1, 0, 0, 0, 0])) == 0.0
    rng = np.random.default_rng(0)
    iid = within_identity_variation(np.repeat(np.arange(200), 10), rng.integers(0, 3, 2000))
    assert 0.95 < iid <= 1.0
    assert np.isnan(within_identity_variation(np.arange(5), np.zeros(5, int)))  # no identity with two images


def adversary_task(adversaries, tmp_path, adversary="reversal"):
    """A multitask task over 30 identities of 6 images: gender fixed per identity, pose drawn per image."""
    from kerasface.data.spec import DatasetSpec, Samples
    from kerasface.train.config import TrainConfig
    from kerasface.train.multitask import MultitaskTask

    rng = np.random.default_rng(1)
    identity = np.repeat(np.arange(30), 6)
    gender = (identity % 2).astype("float32")
    pose = np.eye(3, dtype="float32")[rng.integers(0, 3, len(identity))]
    samples = Samples(np.array([str(tmp_path / f"{i}.png") for i in range(len(identity))]), identity,
                      np.concatenate([gender[:, None], pose], axis=1))
    spec = DatasetSpec("faces.csv", samples, [str(i) for i in range(30)],
                       {"gender": ["female", "male"], "pose": ["frontal", "left", "right"]})
    config = TrainConfig.from_dict(dict(
        task="multitask", split="identity", views="single", backbone="vit", backbone_kwargs=TINY_VIT,
        image_size=32, embedding_dim=16, head_units=8, loss="normface", adversaries=adversaries,
        adversary=adversary))
    return MultitaskTask(config, spec), samples


@pytest.mark.parametrize("chosen, expected", [("auto", ["pose"]), (["all"], ["gender", "pose"]),
                                              (["gender"], ["gender"])])
def test_adversaries_go_to_the_attributes_that_vary_within_an_identity(chosen, expected, tmp_path):
    """auto: the within-identity variation of the training split decides (gender 0, pose about 1);
    the model, its losses, the table and the report follow the choice."""
    task, samples = adversary_task(chosen, tmp_path)
    task.check_data({"train": samples})
    assert task.variation["gender"] == 0.0 and task.variation["pose"] > 0.9
    assert task.adversaries == expected
    model = task.build_model()
    assert sorted(k for k in model.output if k.startswith("da_")) == [f"da_{a}" for a in expected]
    assert sorted(k for k in task.loss_weights() if k.startswith("da_")) == [f"da_{a}" for a in expected]
    if chosen == "auto":
        assert "none on gender 0.00: they belong to the identity" in task.adversary_reason()
        assert "adversaries on pose behind" in task.layout()
        eraser, _ = adversary_task(chosen, tmp_path, adversary="eraser")
        eraser.check_data({"train": samples})
        assert eraser.adversaries == ["pose"] and eraser.adversary_heads == []
        assert not any(k.startswith("da_") for k in eraser.build_model().output)
        assert "LEACE eraser of pose" in eraser.layout()


def test_adversaries_not_among_the_attributes_are_refused(tmp_path):
    from kerasface.errors import BadInputError

    task, samples = adversary_task(["age"], tmp_path)
    with pytest.raises(BadInputError, match=r"--adversaries \['age'\]: not among the attributes"):
        task.check_data({"train": samples})


def test_auto_adversaries_that_choose_none_say_why(tmp_path):
    """Adversaries on, but no attribute varies within an identity: the report names the measured
    variation rather than blaming --adversarial off."""
    task, samples = adversary_task("auto", tmp_path)
    task.check_data({"train": samples.subset(np.flatnonzero(samples.labels[:, 1] == 1))})  # one pose only
    assert task.adversaries == [] and not task.adversarial
    reason = task.adversary_reason()
    assert "--adversarial off" not in reason and "variation >= 0.5, training split): none" in reason, reason
