"""Multi-task attributes with adversarial identity disentanglement (seed 000, plan B).

The gradient-reversal layer's sign and scale on TensorFlow and JAX, missing attribute values
masked out of losses and AUCs, seed 000's table rows, export of both models, and a short demo
run that learns identity and attributes.
"""

import json
import math

import keras
import numpy as np
import pytest

from kerasface.losses.masked import MaskedAUC, MaskedCrossentropy, masked_crossentropy
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
