"""Margin heads against float64 NumPy of their formulas at known angles, gradients at cos = +-1,
mixed precision, MagFace's regulariser, AdaFace's running statistics, saving and XLA."""

import math

import keras
import numpy as np
import pytest
from keras import ops

from kerasface.losses import (
    OHEM, AdaFace, ArcFace, CombinedMargin, ContrastiveLoss, CosFace, FocalLoss, MagFace, NormFace,
    Softmax, SphereFace, TripletLoss,
)
from kerasface.registry import LOSSES

HEAD_NAMES = ["normface", "sphereface", "cosface", "arcface", "combined", "magface", "adaface"]

# four class centres in the plane at 0.1 pi + k pi/2, of norms 1.1, 2.3, 0.7, 3.1 (the head
# normalises them); one embedding per target angle theta, at angle centre + theta
CENTRE_ANGLES = np.array([0.1, 0.6, 1.1, 1.6]) * np.pi
CENTRES = (np.stack([np.cos(CENTRE_ANGLES), np.sin(CENTRE_ANGLES)]) * [1.1, 2.3, 0.7, 3.1])
THETAS = np.array([0.2, 0.7, 1.2, 1.9, 2.5, 2.8, 3.0, 1.0])
LABELS = np.array([0, 1, 2, 3, 0, 1, 2, 3])
NORMS = np.array([5.0, 10.0, 30.0, 60.0, 90.0, 110.0, 150.0, 20.0])
ANGLES = CENTRE_ANGLES[LABELS] + THETAS
UNIT_X = np.array([[1.0], [0.0]])  # one class centre at angle 0
EMBEDDINGS = (np.stack([np.cos(ANGLES), np.sin(ANGLES)], axis=1) * NORMS[:, None]).astype("float32")


def make_head(name, centres=CENTRES, **kwargs):
    head = LOSSES.create(name, centres.shape[1], **kwargs)
    head.build((None, centres.shape[0]))
    head.centres.assign(centres.astype("float32"))
    return head


def cosines(embeddings, centres=CENTRES):
    """float64 cos theta_ij of the float32 inputs."""
    x = embeddings.astype(np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    return x @ (centres / np.linalg.norm(centres, axis=0, keepdims=True))


def arcface_formula(theta, m):
    """cos(theta + m); past pi: cos theta - m sin m."""
    return np.where(theta + m <= np.pi, np.cos(theta + m), np.cos(theta) - m * np.sin(m))


def sphereface_formula(theta, m):
    k = np.floor(m * theta / np.pi)
    return (-1.0) ** k * np.cos(m * theta) - 2.0 * k


def adaface_formula(theta, norms, mean, std, m=0.4, h=0.333, eps=1e-3):
    scaler = np.clip((np.clip(norms, 0.001, 100.0) - mean) / (std + eps) * h, -1.0, 1.0)
    theta = np.arccos(np.clip(np.cos(theta), -1 + eps, 1 - eps))
    return np.cos(np.clip(theta - m * scaler, eps, np.pi - eps)) - (m + m * scaler)


def target_formula(name, theta, norms):
    if name == "normface":
        return np.cos(theta)
    if name == "sphereface":
        return sphereface_formula(theta, 1.35)
    if name == "cosface":
        return np.cos(theta) - 0.35
    if name == "arcface":
        return arcface_formula(theta, 0.5)
    if name == "combined":
        return arcface_formula(theta, 0.5)
    if name == "magface":
        a = np.clip(norms, 10.0, 110.0)
        return arcface_formula(theta, (0.8 - 0.45) / (110.0 - 10.0) * (a - 10.0) + 0.45)
    if name == "adaface":
        return adaface_formula(theta, norms, 20.0, 100.0)
    raise KeyError(name)


def expected_logits(name, scale, embeddings=EMBEDDINGS, labels=LABELS, target=None):
    cos = cosines(embeddings)
    rows = np.arange(len(labels))
    theta = np.arccos(np.clip(cos[rows, labels], -1.0, 1.0))
    norms = np.linalg.norm(embeddings.astype(np.float64), axis=1)
    out = scale * cos
    out[rows, labels] = scale * (target_formula(name, theta, norms) if target is None else target)
    return out


def gradients(head, embeddings, labels, training=False):
    """d/d(embeddings, centres) of sum(logits * R) plus the losses the head adds."""
    weights = np.random.default_rng(1).normal(size=(len(embeddings), head.num_classes))
    weights = weights.astype("float32")
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        x = tf.constant(embeddings)
        with tf.GradientTape() as tape:
            tape.watch(x)
            total = tf.reduce_sum(head(x, labels, training=training) * weights)
            total += sum(head.losses)
        return [np.asarray(g) for g in tape.gradient(total, [x, head.centres.value])]
    import jax

    def total(x, trainable):
        non_trainable = [v.value for v in head.non_trainable_variables]
        out, _, losses = head.stateless_call(
            trainable, non_trainable, x, labels, training=training, return_losses=True
        )
        return (out * weights).sum() + sum(losses)

    trainable = [v.value for v in head.trainable_variables]
    gx, gw = jax.grad(total, argnums=(0, 1))(jax.numpy.asarray(embeddings), trainable)
    return [np.asarray(gx), np.asarray(gw[0])]


def test_registry_names_and_classes():
    expected = {
        "softmax": Softmax, "normface": NormFace, "sphereface": SphereFace, "cosface": CosFace,
        "arcface": ArcFace, "combined": CombinedMargin, "magface": MagFace, "adaface": AdaFace,
        "triplet": TripletLoss, "contrastive": ContrastiveLoss, "focal": FocalLoss, "ohem": OHEM,
    }
    assert set(expected) <= set(LOSSES.names())
    for name, cls in expected.items():
        assert LOSSES.get(name) is cls
    assert isinstance(LOSSES.create("ArcFace", 10, margin=0.3), ArcFace)


def test_registries_by_calling_contract_and_the_names_read_from_them():
    from kerasface.registry import LOGIT_LOSSES, MARGIN_HEADS, METRIC_LOSSES
    from kerasface.train.recognition import loss_choices, parse_loss

    assert set(["softmax"] + HEAD_NAMES) <= set(MARGIN_HEADS.names())
    assert {"contrastive", "triplet"} <= set(METRIC_LOSSES.names()) and {"focal", "ohem"} <= set(LOGIT_LOSSES.names())
    assert LOSSES.names() == sorted(MARGIN_HEADS.names() + METRIC_LOSSES.names() + LOGIT_LOSSES.names())
    with pytest.raises(TypeError, match="margin head, metric loss, logit loss"):
        LOSSES.register("x")
    choices = loss_choices()
    assert all(name in choices for name in LOSSES.names()) and "focal+HEAD or ohem+HEAD" in choices
    assert parse_loss("ohem+cosface") == ("ohem", "cosface") and parse_loss("contrastive") == ("contrastive", None)
    for wrong in ("focal", "ohem+triplet", "triplet+arcface"):
        with pytest.raises(KeyError):
            parse_loss(wrong)


def test_the_test_geometry_puts_each_target_at_its_angle():
    cos = cosines(EMBEDDINGS)
    np.testing.assert_allclose(np.arccos(cos[np.arange(8), LABELS]), THETAS, atol=1e-6)
    assert (THETAS[:-1] + 0.5 > np.pi).sum() == 2  # ArcFace's fallback branch is covered
    assert set(np.floor(1.35 * THETAS / np.pi)) == {0.0, 1.0}  # both pieces of SphereFace's psi


@pytest.mark.backend
@pytest.mark.parametrize("name", HEAD_NAMES)
def test_logits_match_the_formula_at_known_angles(name):
    head = make_head(name)
    out = np.asarray(head(EMBEDDINGS, LABELS))
    assert out.shape == (8, 4) and out.dtype == np.float32
    expected = expected_logits(name, head.scale)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=2e-4 * head.scale)
    # labels as a (B, 1) column give the same logits
    np.testing.assert_array_equal(np.asarray(head(EMBEDDINGS, LABELS[:, None])), out)


@pytest.mark.backend
@pytest.mark.parametrize("name", HEAD_NAMES)
def test_inference_without_labels_is_scaled_cosine(name):
    head = make_head(name)
    out = np.asarray(head(EMBEDDINGS))
    np.testing.assert_allclose(out, head.scale * cosines(EMBEDDINGS), atol=1e-5 * head.scale)
    if name not in ("normface", "adaface"):
        # with labels the target logits move, so the two calls really differ
        assert not np.allclose(np.asarray(head(EMBEDDINGS, LABELS)), out, atol=1e-2)


@pytest.mark.backend
def test_default_scales_and_margins():
    defaults = {
        "normface": (30.0, {}), "sphereface": (30.0, {"margin": 1.35}),
        "cosface": (64.0, {"margin": 0.35}),
        "arcface": (64.0, {"margin": 0.5, "easy_margin": False}),
        "combined": (64.0, {"m1": 1.0, "m2": 0.5, "m3": 0.0}),
        "magface": (64.0, {"l_a": 10.0, "u_a": 110.0, "l_m": 0.45, "u_m": 0.8, "lambda_g": 35.0}),
        "adaface": (64.0, {"margin": 0.4, "h": 0.333, "t_alpha": 0.01}),
    }
    for name, (scale, params) in defaults.items():
        config = LOSSES.create(name, 7).get_config()
        assert config["num_classes"] == 7 and config["scale"] == scale, name
        assert {k: config[k] for k in params} == params, name


@pytest.mark.backend
def test_values_by_hand():
    # CosFace at cos = 0.5: 64 * (0.5 - 0.35) = 9.6
    x = np.array([[math.cos(math.pi / 3), math.sin(math.pi / 3)]], dtype="float32")
    out = float(make_head("cosface", centres=UNIT_X)(x, np.array([0]))[0, 0])
    assert out == pytest.approx(9.6, abs=1e-4)
    # ArcFace at theta = pi/2 - m: cos(pi/2) = 0
    t = math.pi / 2 - 0.5
    x = np.array([[math.cos(t), math.sin(t)]], dtype="float32")
    out = float(make_head("arcface", centres=UNIT_X)(x, np.array([0]))[0, 0])
    assert out == pytest.approx(0.0, abs=1e-4)
    # ArcFace at theta = 11pi/12 (theta + 0.5 > pi): cos(11pi/12) - 0.5 sin(0.5) = -1.205638
    t = 11 * math.pi / 12
    x = np.array([[math.cos(t), math.sin(t)]], dtype="float32")
    out = float(make_head("arcface", centres=UNIT_X, scale=1.0)(x, np.array([0]))[0, 0])
    assert out == pytest.approx(-0.9659258 - 0.2397128, abs=1e-5)
    # SphereFace m = 4: theta = pi/3 -> k = 1, -cos(4pi/3) - 2 = -1.5;
    # theta = pi/2 -> k = 2, cos(2pi) - 4 = -3
    head = make_head("sphereface", centres=UNIT_X, scale=1.0, margin=4.0)
    x = np.array([[0.5, math.sqrt(3) / 2], [0.0, 1.0]], dtype="float32")
    np.testing.assert_allclose(np.asarray(head(x, np.array([0, 0])))[:, 0], [-1.5, -3.0], atol=1e-4)


@pytest.mark.backend
def test_sphereface_psi_is_monotonic_and_piecewise_for_integer_margin():
    thetas = np.linspace(0.05, np.pi - 0.05, 60)
    x = np.stack([np.cos(thetas), np.sin(thetas)], axis=1).astype("float32")
    for m in (1.35, 4.0):
        head = make_head("sphereface", centres=UNIT_X, scale=1.0, margin=m)
        psi = np.asarray(head(x, np.zeros(60, dtype="int32")))[:, 0]
        np.testing.assert_allclose(psi, sphereface_formula(thetas, m), atol=1e-4)
        assert np.all(np.diff(psi) < 0), m
    assert set(np.floor(4.0 * thetas / np.pi)) == {0.0, 1.0, 2.0, 3.0}


@pytest.mark.backend
def test_arcface_easy_margin_and_combined_margin_general_case():
    head = make_head("arcface", easy_margin=True)
    cos = np.cos(THETAS)
    target = np.where(cos > 0, np.cos(THETAS + 0.5), cos)
    np.testing.assert_allclose(
        np.asarray(head(EMBEDDINGS, LABELS)), expected_logits("arcface", 64.0, target=target),
        atol=2e-4 * 64,
    )
    head = make_head("combined", scale=32.0, m1=1.2, m2=0.3, m3=0.15)
    target = np.cos(1.2 * THETAS + 0.3) - 0.15
    np.testing.assert_allclose(
        np.asarray(head(EMBEDDINGS, LABELS)), expected_logits("combined", 32.0, target=target),
        atol=2e-4 * 32,
    )


@pytest.mark.backend
def test_combined_margin_with_m1_one_takes_arcface_fallback_and_decreases_in_theta():
    thetas = np.linspace(0.05, 3.1, 64)
    embeddings = np.stack([np.cos(thetas), np.sin(thetas)], axis=1).astype("float32")
    labels = np.zeros(len(thetas), "int32")
    for m3 in (0.0, 0.2):
        head = CombinedMargin(1, scale=1.0, m1=1.0, m2=0.5, m3=m3)
        head.build((None, 2))
        head.centres.assign(np.array([[1.0], [0.0]], "float32"))
        target = np.asarray(head(embeddings, labels))[:, 0]
        np.testing.assert_allclose(target, arcface_formula(thetas, 0.5) - m3, atol=2e-4)
        assert np.all(np.diff(target) < 0)


@pytest.mark.backend
def test_softmax_is_a_dense_layer_with_bias():
    head = make_head("softmax")
    bias = np.array([0.5, -1.0, 2.0, 0.0], dtype="float32")
    head.bias.assign(bias)
    expected = EMBEDDINGS.astype(np.float64) @ CENTRES + bias
    for labels in (LABELS, None):
        out = np.asarray(head(EMBEDDINGS, labels))
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-3)
    assert "scale" not in head.get_config()


@pytest.mark.backend
@pytest.mark.parametrize("name", ["softmax"] + HEAD_NAMES)
def test_finite_values_and_gradients_at_cos_plus_and_minus_one(name):
    # centres (1, 0), (0, 1), (-1, 0) of norm 4; embeddings (+-16, 0): cos exactly +-1
    centres = np.array([[4.0, 0.0, -4.0], [0.0, 4.0, 0.0]])
    x = np.array([[16.0, 0.0], [16.0, 0.0], [-16.0, 0.0], [0.0, 16.0]], dtype="float32")
    labels = np.array([0, 2, 0, 1])  # target cos +1, -1, -1, +1
    head = make_head(name, centres=centres)
    if name != "softmax":
        cos = np.asarray(head.cosine(x))
        np.testing.assert_array_equal(cos[np.arange(4), labels], [1.0, -1.0, -1.0, 1.0])
    out = np.asarray(head(x, labels))
    assert np.isfinite(out).all()
    gx, gw = gradients(head, x, labels)
    assert gx.shape == x.shape and gw.shape == centres.shape
    assert np.isfinite(gx).all() and np.isfinite(gw).all()
    assert np.abs(gw).sum() > 0


@pytest.mark.backend
def test_arcface_gradient_is_the_true_derivative_of_the_margin():
    """No stop_gradient: moving the unit embedding by d(angle) moves s cos(theta + m) by
    -s sin(theta + m) d(angle); the tangent of the angle is (-sin theta, cos theta)."""
    theta = 1.0
    x = np.array([[math.cos(theta), math.sin(theta)]], dtype="float32")
    head = make_head("arcface", centres=UNIT_X)
    gx = gradients(head, x, np.array([0]))[0]
    weight = np.random.default_rng(1).normal(size=(1, 1))[0, 0]  # the R of gradients()
    tangent = np.array([-math.sin(theta), math.cos(theta)])
    assert gx[0] @ tangent == pytest.approx(-64.0 * math.sin(theta + 0.5) * weight, rel=1e-4)


@pytest.mark.backend
@pytest.mark.parametrize("name", ["softmax"] + HEAD_NAMES)
def test_mixed_bfloat16_keeps_float32_arithmetic_and_logits(name):
    reference = make_head(name)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        head = make_head(name)
        assert head.compute_dtype == "bfloat16"  # the policy applies, the head does not use it
        out = head(ops.cast(EMBEDDINGS, "bfloat16"), LABELS)
    finally:
        keras.config.set_dtype_policy(previous)
    assert keras.backend.standardize_dtype(head.centres.dtype) == "float32"
    assert keras.backend.standardize_dtype(out.dtype) == "float32"
    out = np.asarray(out)
    rounded = np.asarray(ops.cast(ops.cast(EMBEDDINGS, "bfloat16"), "float32"))
    np.testing.assert_allclose(out, np.asarray(reference(rounded, LABELS)), rtol=1e-6, atol=1e-5)
    scale = 1.0 if name == "softmax" else reference.scale
    atol = 3e-2 * scale if name != "softmax" else 0.5
    np.testing.assert_allclose(out, np.asarray(reference(EMBEDDINGS, LABELS)), atol=atol)


@pytest.mark.backend
def test_magface_regulariser_value():
    head = make_head("magface")
    head(EMBEDDINGS, LABELS)
    assert len(head.losses) == 1
    a = np.clip(NORMS, 10.0, 110.0)
    expected = 35.0 * np.mean(1.0 / a + a / 110.0**2)
    assert float(head.losses[0]) == pytest.approx(expected, rel=1e-5)
    # by hand, one embedding of norm 10: 35 * (1/10 + 10/12100) = 3.5289256
    head(np.array([[6.0, 8.0]], dtype="float32"), np.array([1]))
    assert float(head.losses[0]) == pytest.approx(3.5289256, rel=1e-6)
    head(EMBEDDINGS)  # inference: no margin, no regulariser
    assert head.losses == []


def _unbiased_std(values):
    return float(np.std(values, ddof=1))


@pytest.mark.backend
def test_adaface_running_statistics_update_in_training_only():
    head = make_head("adaface")
    assert (float(head.batch_mean), float(head.batch_std)) == (20.0, 100.0)
    assert [w.name for w in head.non_trainable_weights] == ["batch_mean", "batch_std"]
    norms = np.clip(NORMS, 0.001, 100.0)
    mean = 0.01 * norms.mean() + 0.99 * 20.0
    std = 0.01 * _unbiased_std(norms) + 0.99 * 100.0

    out = np.asarray(head(EMBEDDINGS, LABELS, training=True))
    assert float(head.batch_mean) == pytest.approx(mean, rel=1e-6)
    assert float(head.batch_std) == pytest.approx(std, rel=1e-6)
    # the margin of this step uses the statistics just updated (the official order)
    target = adaface_formula(THETAS, NORMS, mean, std)
    np.testing.assert_allclose(out, expected_logits("adaface", 64.0, target=target), atol=2e-4 * 64)

    for call in (lambda: head(EMBEDDINGS, LABELS), lambda: head(EMBEDDINGS, LABELS, training=False),
                 lambda: head(EMBEDDINGS, training=True)):
        call()
        assert float(head.batch_mean) == pytest.approx(mean, rel=1e-6)
        assert float(head.batch_std) == pytest.approx(std, rel=1e-6)
    np.testing.assert_allclose(
        np.asarray(head(EMBEDDINGS, LABELS)), expected_logits("adaface", 64.0, target=target),
        atol=2e-4 * 64,
    )
    # a second training step moves them again
    head(EMBEDDINGS[:4], LABELS[:4], training=True)
    assert float(head.batch_mean) == pytest.approx(0.01 * norms[:4].mean() + 0.99 * mean, rel=1e-6)
    expected_std = 0.01 * _unbiased_std(norms[:4]) + 0.99 * std
    assert float(head.batch_std) == pytest.approx(expected_std, rel=1e-6)


@pytest.mark.backend
def test_adaface_margin_grows_with_the_norm():
    # same angle, higher norm -> smaller target logit (harder margin for high-quality faces)
    head = make_head("adaface", centres=UNIT_X)
    head.batch_mean.assign(30.0)
    head.batch_std.assign(10.0)
    norms = np.array([10.0, 30.0, 50.0])
    x = (np.array([[math.cos(1.0), math.sin(1.0)]]) * norms[:, None]).astype("float32")
    logits = np.asarray(head(x, np.zeros(3, "int32")))[:, 0]
    assert logits[0] > logits[1] > logits[2]
    expected = 64 * adaface_formula(np.full(3, 1.0), norms, 30.0, 10.0)
    np.testing.assert_allclose(logits, expected, atol=1e-3)


def _head_model(name, **kwargs):
    embeddings = keras.Input((2,), name="embeddings")
    labels = keras.Input((), dtype="int32", name="labels")
    head = make_head(name, **kwargs)
    return keras.Model([embeddings, labels], head(embeddings, labels)), head


@pytest.mark.backend
@pytest.mark.parametrize("name", ["softmax"] + HEAD_NAMES)
def test_keras_round_trip_of_every_head(tmp_path, name):
    kwargs = {"softmax": {}, "normface": {"scale": 16.0}, "sphereface": {"margin": 4.0},
              "cosface": {"margin": 0.2}, "arcface": {"easy_margin": True},
              "combined": {"m1": 1.1, "m2": 0.2, "m3": 0.1}, "magface": {"u_m": 0.9},
              "adaface": {"h": 0.5}}[name]
    model, head = _head_model(name, **kwargs)
    if name == "adaface":
        head(EMBEDDINGS, LABELS, training=True)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    loaded_head = loaded.layers[-1]
    assert type(loaded_head) is type(head)
    assert loaded_head.get_config() == head.get_config()
    for key, value in kwargs.items():
        assert loaded_head.get_config()[key] == value
    for a, b in zip(loaded_head.weights, head.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(
        np.asarray(loaded([EMBEDDINGS, LABELS])), np.asarray(model([EMBEDDINGS, LABELS]))
    )
    if name == "adaface":  # the running statistics survive the round trip
        assert float(loaded_head.batch_mean) == pytest.approx(float(head.batch_mean))
        assert float(loaded_head.batch_mean) != 20.0 and float(loaded_head.batch_std) != 100.0


@pytest.mark.backend
def test_heads_train_in_a_jit_compiled_step():
    """Heads in one ``jit_compile=True`` train step (XLA under TensorFlow, jax.jit under JAX);
    the step's loss is the cross-entropy of every head plus MagFace's regulariser."""
    names = ["sphereface", "arcface", "magface", "adaface"]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 6)).astype("float32")
    y = rng.integers(0, 5, size=16).astype("int32")
    inputs, labels = keras.Input((6,)), keras.Input((), dtype="int32")
    features = keras.layers.Dense(4, kernel_initializer=keras.initializers.Constant(0.5))(inputs)
    heads = {name: LOSSES.get(name)(5, name=name) for name in names}
    model = keras.Model(
        [inputs, labels], {name: head(features, labels) for name, head in heads.items()}
    )
    cross_entropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(
        optimizer=keras.optimizers.SGD(0.01), loss={name: cross_entropy for name in names},
        jit_compile=True,
    )
    before = {name: np.asarray(head.centres).copy() for name, head in heads.items()}
    outputs = model([x, y], training=True)
    expected = sum(float(cross_entropy(y, outputs[name])) for name in names)
    expected += float(sum(model.losses))  # MagFace's regulariser
    assert len(model.losses) == 1
    heads["adaface"].batch_mean.assign(20.0)  # undo the statistics update of that call
    heads["adaface"].batch_std.assign(100.0)
    logs = model.train_on_batch([x, y], {name: y for name in names}, return_dict=True)
    assert logs["loss"] == pytest.approx(expected, rel=1e-4)
    for name, head in heads.items():
        assert not np.allclose(np.asarray(head.centres), before[name]), name  # trained
    assert float(heads["adaface"].batch_mean) != 20.0 and float(heads["adaface"].batch_std) != 100.0


def test_losses_import_and_run_without_tensorflow():
    """The GPU machines run the JAX backend without TensorFlow installed."""
    from conftest import run_without_tensorflow

    out = run_without_tensorflow(
        "import numpy as np\n"
        "from kerasface.losses import ArcFace, TripletLoss\n"
        "x = np.eye(3, dtype='float32'); y = np.array([0, 1, 1])\n"
        "assert np.isfinite(np.asarray(ArcFace(3)(x, y))).all()\n"
        "assert np.isfinite(float(TripletLoss()(y, x)))\n"
        "print('ok')\n"
    )
    assert out.strip() == "ok"
