"""Triplet mining on hand-placed points and against float64 NumPy loops of its rules,
contrastive, focal and OHEM values against NumPy, gradients, dynamic batches and saving."""

import math

import keras
import numpy as np
import pytest

from kerasface.losses import OHEM, ContrastiveLoss, FocalLoss, NormFace, TripletLoss
from kerasface.registry import LOSSES

# five unit vectors on the circle at these angles: A, B of identity 0, C, D of identity 1,
# E alone in identity 2 (a negative for everyone, an anchor with no positive)
CIRCLE_ANGLES = np.array([0.0, 0.4, 0.3, 1.0, 0.65])
CIRCLE = np.stack([np.cos(CIRCLE_ANGLES), np.sin(CIRCLE_ANGLES)], axis=1).astype("float32")
CIRCLE_LABELS = np.array([0, 0, 1, 1, 2])

DISTANCE_OF_ANGLE = {  # distance between unit vectors an angle apart
    "cosine": lambda t: 1.0 - np.cos(t),
    "squared_l2": lambda t: 2.0 - 2.0 * np.cos(t),
    "l2": lambda t: 2.0 * np.sin(t / 2.0),
}


def distances(embeddings, distance):
    x = embeddings.astype(np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    if distance == "cosine":
        d = 1.0 - x @ x.T
    else:
        d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
        d = np.sqrt(d) if distance == "l2" else d
    np.fill_diagonal(d, 0.0)
    return d


def semi_hard_reference(labels, embeddings, margin, distance):
    """TF Addons' TripletSemiHardLoss, one anchor-positive pair at a time."""
    d = distances(embeddings, distance)
    losses = []
    for a in range(len(labels)):
        negatives = [n for n in range(len(labels)) if labels[n] != labels[a]]
        for p in range(len(labels)):
            if p == a or labels[p] != labels[a]:
                continue
            beyond = [d[a, n] for n in negatives if d[a, n] > d[a, p]]
            negative = min(beyond) if beyond else max(d[a, n] for n in negatives)
            losses.append(max(d[a, p] - negative + margin, 0.0))
    return float(np.mean(losses))


def batch_hard_reference(labels, embeddings, margin, distance):
    d = distances(embeddings, distance)
    losses = []
    for a in range(len(labels)):
        positives = [d[a, p] for p in range(len(labels)) if p != a and labels[p] == labels[a]]
        negatives = [d[a, n] for n in range(len(labels)) if labels[n] != labels[a]]
        if positives:
            losses.append(max(max(positives) - min(negatives) + margin, 0.0))
    return float(np.mean(losses))


def batch_all_reference(labels, embeddings, margin, distance):
    d = distances(embeddings, distance)
    losses = [
        max(d[a, p] - d[a, n] + margin, 0.0)
        for a in range(len(labels)) for p in range(len(labels)) for n in range(len(labels))
        if p != a and labels[p] == labels[a] and labels[n] != labels[a]
    ]
    positive = [v for v in losses if v > 1e-16]
    return float(np.sum(positive) / max(len(positive), 1))


REFERENCES = {"semi-hard": semi_hard_reference, "hard": batch_hard_reference,
              "all": batch_all_reference}


def random_batch(seed=0, size=16, dim=6):
    rng = np.random.default_rng(seed)
    labels = np.concatenate([rng.integers(0, 4, size=size - 1), [9]])  # 9: a singleton
    return labels, rng.normal(size=(size, dim)).astype("float32")


def gradient(loss, labels, embeddings):
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        x = tf.constant(embeddings)
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = loss(labels, x)
        return np.asarray(value), np.asarray(tape.gradient(value, x))
    import jax

    value, grad = jax.value_and_grad(lambda x: loss(labels, x))(jax.numpy.asarray(embeddings))
    return np.asarray(value), np.asarray(grad)


@pytest.mark.backend
@pytest.mark.parametrize("distance", ["cosine", "l2", "squared_l2"])
def test_semi_hard_picks_the_negatives_worked_out_by_hand(distance):
    d = DISTANCE_OF_ANGLE[distance]
    margin = {"cosine": 0.2, "l2": 0.2, "squared_l2": 0.4}[distance]
    # anchor-positive pair: the negatives farther than the positive -> the chosen one
    # (A, B) 0.4: D 1.0, E 0.65 -> E (the closest beyond)
    # (B, A) 0.4: D 0.6 (C 0.1 and E 0.25 are closer) -> D
    # (C, D) 0.7: none of A 0.3, B 0.1, E 0.35 -> the farthest negative, E
    # (D, C) 0.7: A 1.0 (B 0.6, E 0.35 closer) -> A
    pairs = [(0.4, 0.65), (0.4, 0.6), (0.7, 0.35), (0.7, 1.0)]
    expected = np.mean([max(d(p) - d(n) + margin, 0.0) for p, n in pairs])
    loss = TripletLoss(margin=margin, mining="semi-hard", distance=distance)
    assert float(loss(CIRCLE_LABELS, CIRCLE)) == pytest.approx(expected, rel=1e-5, abs=1e-6)
    hinges = [max(d(p) - d(n) + margin, 0.0) for p, n in pairs]
    assert 0.0 in hinges and sum(h > 0 for h in hinges) >= 2  # both sides of the hinge


@pytest.mark.backend
@pytest.mark.parametrize("distance", ["cosine", "l2"])
def test_batch_hard_picks_by_hand_and_skips_the_anchor_without_positive(distance):
    d = DISTANCE_OF_ANGLE[distance]
    margin = 0.2
    # anchor: farthest positive, closest negative; E has no positive and is left out
    # A: B 0.4, C 0.3; B: A 0.4, C 0.1; C: D 0.7, B 0.1; D: C 0.7, E 0.35
    pairs = [(0.4, 0.3), (0.4, 0.1), (0.7, 0.1), (0.7, 0.35)]
    expected = np.mean([max(d(p) - d(n) + margin, 0.0) for p, n in pairs])
    loss = TripletLoss(margin=margin, mining="hard", distance=distance)
    assert float(loss(CIRCLE_LABELS, CIRCLE)) == pytest.approx(expected, rel=1e-5)


@pytest.mark.backend
def test_batch_all_by_hand():
    d = DISTANCE_OF_ANGLE["cosine"]
    # 12 valid triplets (a, p, n), by anchor-positive and anchor-negative angle; with margin 0.1
    # (d(n) < d(p) + 0.1) these 9 have a positive loss:
    # (A,B,C) 0.4/0.3, (B,A,C) 0.4/0.1, (B,A,D) 0.4/0.6, (B,A,E) 0.4/0.25, (C,D,A) 0.7/0.3,
    # (C,D,B) 0.7/0.1, (C,D,E) 0.7/0.35, (D,C,B) 0.7/0.6, (D,C,E) 0.7/0.35
    # and these 3 not: (A,B,D) 0.4/1.0, (A,B,E) 0.4/0.65, (D,C,A) 0.7/1.0
    positive = [(0.4, 0.3), (0.4, 0.1), (0.4, 0.6), (0.4, 0.25), (0.7, 0.3), (0.7, 0.1),
                (0.7, 0.35), (0.7, 0.6), (0.7, 0.35)]
    values = [d(p) - d(n) + 0.1 for p, n in positive]
    assert min(values) > 0
    for p, n in [(0.4, 1.0), (0.4, 0.65), (0.7, 1.0)]:
        assert d(p) - d(n) + 0.1 <= 0
    loss = TripletLoss(margin=0.1, mining="all", distance="cosine")
    assert float(loss(CIRCLE_LABELS, CIRCLE)) == pytest.approx(np.mean(values), rel=1e-5)


@pytest.mark.backend
@pytest.mark.parametrize("mining", ["semi-hard", "hard", "all"])
@pytest.mark.parametrize("distance", ["l2", "squared_l2", "cosine"])
def test_triplet_mining_matches_numpy_loops_on_a_random_batch(mining, distance):
    labels, embeddings = random_batch()
    for margin in (0.2, 1.0):
        expected = REFERENCES[mining](labels, embeddings, margin, distance)
        loss = TripletLoss(margin=margin, mining=mining, distance=distance)
        assert float(loss(labels, embeddings)) == pytest.approx(expected, rel=1e-4, abs=1e-6)
        # labels as a column, embeddings scaled: the same (they are normalised first)
        value = float(loss(labels[:, None], 3.0 * embeddings))
        assert value == pytest.approx(expected, rel=1e-4, abs=1e-6)


def test_semi_hard_matches_numpy_on_a_batch_where_the_rules_differ():
    # the reference really separates the rules on this batch
    labels, embeddings = random_batch(seed=3)
    values = {m: REFERENCES[m](labels, embeddings, 0.35, "l2") for m in REFERENCES}
    assert len({round(v, 6) for v in values.values()}) == 3
    assert float(TripletLoss()(labels, embeddings)) == pytest.approx(values["semi-hard"], rel=1e-4)


@pytest.mark.backend
@pytest.mark.parametrize("mining", ["semi-hard", "hard", "all"])
def test_triplet_gradient_is_finite_with_duplicate_embeddings(mining):
    # rows 0 and 1 identical (positive distance 0), row 2 identical to them (negative at 0)
    embeddings = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], "float32")
    labels = np.array([0, 0, 1, 1, 0])
    value, grad = gradient(TripletLoss(mining=mining, distance="l2"), labels, embeddings)
    assert np.isfinite(value) and np.isfinite(grad).all() and np.abs(grad).sum() > 0
    assert float(value) == pytest.approx(REFERENCES[mining](labels, embeddings, 0.35, "l2"), rel=1e-5)


@pytest.mark.backend
def test_triplet_without_positive_pairs_is_zero():
    assert float(TripletLoss()(np.arange(4), CIRCLE[:4])) == 0.0
    assert float(TripletLoss(mining="hard")(np.arange(4), CIRCLE[:4])) == 0.0


def test_triplet_rejects_unknown_options():
    with pytest.raises(ValueError, match="mining 'easy' is not one of semi-hard, hard, all"):
        TripletLoss(mining="easy")
    with pytest.raises(ValueError, match="distance 'L2' is not one of l2, squared_l2, cosine"):
        TripletLoss(distance="L2")
    with pytest.raises(ValueError, match="keep_ratio"):
        OHEM(keep_ratio=0.0)


def contrastive_reference(labels, embeddings, margin):
    d = distances(embeddings, "l2")
    values = [
        d[i, j] ** 2 if labels[i] == labels[j] else max(margin - d[i, j], 0.0) ** 2
        for i in range(len(labels)) for j in range(i + 1, len(labels))
    ]
    return float(np.mean(values))


@pytest.mark.backend
def test_contrastive_by_hand_and_against_numpy():
    # (1,0), (0,1) same: d^2 = 2; (1,0), (-1,0) different: d = 2; (0,1), (-1,0): d = sqrt 2
    x = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], "float32")
    labels = np.array([0, 0, 1])
    assert float(ContrastiveLoss(margin=1.0)(labels, x)) == pytest.approx(2.0 / 3.0, rel=1e-6)
    expected = (2.0 + 0.5**2 + (2.5 - math.sqrt(2.0)) ** 2) / 3.0
    assert float(ContrastiveLoss(margin=2.5)(labels, x)) == pytest.approx(expected, rel=1e-6)
    labels, embeddings = random_batch(seed=1)
    for margin in (0.5, 1.0, 1.5):
        expected = contrastive_reference(labels, embeddings, margin)
        assert float(ContrastiveLoss(margin)(labels, embeddings)) == pytest.approx(expected, rel=1e-5)
    value, grad = gradient(ContrastiveLoss(), np.array([0, 0, 1]), x[[0, 0, 0]])
    assert np.isfinite(grad).all() and float(value) == pytest.approx(2.0 / 3.0, rel=1e-6)


def log_softmax(logits):
    z = logits - logits.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def cross_entropy(labels, logits):
    return -log_softmax(logits.astype(np.float64))[np.arange(len(labels)), labels]


@pytest.mark.backend
def test_focal_loss_by_hand_and_against_numpy():
    # two equal logits: p_t = 1/2, -(1/2)^2 log(1/2) = 0.25 ln 2
    value = float(FocalLoss()(np.array([1]), np.zeros((1, 2), "float32")))
    assert value == pytest.approx(0.25 * math.log(2.0), rel=1e-6)
    rng = np.random.default_rng(2)
    logits = (rng.normal(size=(12, 7)) * 4).astype("float32")
    labels = rng.integers(0, 7, size=12)
    ce = cross_entropy(labels, logits)
    p_t = np.exp(-ce)
    for gamma in (0.0, 0.5, 2.0):
        expected = np.mean(-((1 - p_t) ** gamma) * np.log(p_t))
        assert float(FocalLoss(gamma)(labels, logits)) == pytest.approx(expected, rel=1e-5)
    reference = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, logits)
    assert float(FocalLoss(0.0)(labels[:, None], logits)) == pytest.approx(float(reference), rel=1e-5)


@pytest.mark.backend
def test_ohem_keeps_the_hardest_ceil_fraction():
    rng = np.random.default_rng(4)
    logits = (rng.normal(size=(10, 5)) * 3).astype("float32")
    labels = rng.integers(0, 5, size=10)
    ce = np.sort(cross_entropy(labels, logits))[::-1]
    # 0.7 * 10 = 7.000000000000001 in floating point: still 7 samples, not 8
    assert float(OHEM(0.7)(labels, logits)) == pytest.approx(ce[:7].mean(), rel=1e-5)
    assert ce[:7].mean() != pytest.approx(ce[:8].mean(), rel=1e-3)
    assert float(OHEM(0.25)(labels, logits)) == pytest.approx(ce[:3].mean(), rel=1e-5)  # ceil 2.5
    assert float(OHEM(1.0)(labels, logits)) == pytest.approx(ce.mean(), rel=1e-5)
    assert float(OHEM(0.01)(labels, logits)) == pytest.approx(ce[0], rel=1e-5)  # at least one
    value, grad = gradient(OHEM(0.5), labels, logits)
    assert np.isfinite(grad).all()
    kept = np.abs(grad).sum(axis=1) > 0  # only the 5 hardest samples get a gradient
    assert kept.sum() == 5
    np.testing.assert_array_equal(kept, cross_entropy(labels, logits) >= ce[4])


def test_ohem_and_losses_with_a_dynamic_batch_under_tensorflow():
    if keras.backend.backend() != "tensorflow":
        pytest.skip("a dynamic batch size is a TensorFlow graph")
    import tensorflow as tf

    rng = np.random.default_rng(5)
    logits = (rng.normal(size=(10, 5)) * 3).astype("float32")
    labels = rng.integers(0, 5, size=10).astype("int32")
    labels16, embeddings = random_batch(seed=6)
    for loss, y, x in [(OHEM(0.7), labels, logits), (OHEM(0.25), labels, logits),
                       (FocalLoss(), labels, logits), (ContrastiveLoss(), labels16, embeddings),
                       (TripletLoss(), labels16, embeddings),
                       (TripletLoss(mining="hard", distance="cosine"), labels16, embeddings),
                       (TripletLoss(mining="all"), labels16, embeddings)]:
        spec = [tf.TensorSpec([None], tf.int32), tf.TensorSpec([None, x.shape[1]], tf.float32)]
        dynamic = tf.function(lambda y, x: loss(y, x), input_signature=spec)
        assert float(dynamic(y.astype("int32"), x)) == pytest.approx(float(loss(y, x)), rel=1e-5)


@pytest.mark.backend
def test_focal_and_ohem_on_normface_logits():
    """The loss comparison's "FocalLoss & NormFace" and "OHEM & NormFace"."""
    labels, embeddings = random_batch(seed=7, size=12, dim=8)
    labels = labels % 5
    head = NormFace(5)
    centres = np.random.default_rng(8).normal(size=(8, 5)).astype("float32")
    head.build((None, 8))
    head.centres.assign(centres)
    logits = np.asarray(head(embeddings, labels))
    x = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    cos = x.astype(np.float64) @ (centres / np.linalg.norm(centres, axis=0))
    np.testing.assert_allclose(logits, 30.0 * cos, atol=1e-4)
    ce = cross_entropy(labels, 30.0 * cos)
    p_t = np.exp(-ce)
    focal = np.mean(-((1 - p_t) ** 2) * np.log(p_t))
    assert float(FocalLoss()(labels, logits)) == pytest.approx(focal, rel=1e-4)
    assert float(OHEM(0.5)(labels, logits)) == pytest.approx(np.sort(ce)[::-1][:6].mean(), rel=1e-4)


@pytest.mark.backend
@pytest.mark.parametrize("loss_name", ["focal", "ohem"])
def test_normface_with_focal_or_ohem_trains_in_a_jit_compiled_step(loss_name):
    rng = np.random.default_rng(9)
    centres = rng.normal(size=(5, 8))
    y = rng.integers(0, 5, size=32).astype("int32")
    x = (centres[y] + 0.5 * rng.normal(size=(32, 8))).astype("float32")
    inputs, labels = keras.Input((8,)), keras.Input((), dtype="int32")
    head = NormFace(5, scale=16.0)
    model = keras.Model([inputs, labels], head(inputs, labels))
    head.centres.assign(rng.normal(size=(8, 5)).astype("float32"))  # unit scale: steady SGD
    model.compile(keras.optimizers.SGD(0.5), loss=LOSSES.create(loss_name), jit_compile=True)
    losses = [model.train_on_batch([x, y], y) for _ in range(15)]
    assert np.isfinite(losses).all() and losses[-1] < 0.8 * losses[0]


@pytest.mark.backend
def test_loss_configs_round_trip(tmp_path):
    losses = [TripletLoss(margin=0.2, mining="hard", distance="cosine"), ContrastiveLoss(0.7),
              FocalLoss(gamma=1.5), OHEM(keep_ratio=0.6)]
    labels, embeddings = random_batch(seed=10, size=8, dim=5)
    for loss in losses:
        restored = keras.losses.deserialize(keras.losses.serialize(loss))
        assert type(restored) is type(loss) and restored.get_config() == loss.get_config()
        assert float(restored(labels % 5, embeddings)) == float(loss(labels % 5, embeddings))
    # a model compiled with a metric loss saves and loads it (safe_mode)
    inputs = keras.Input((5,))
    model = keras.Model(inputs, keras.layers.Dense(4)(inputs))
    model.compile(optimizer="sgd", loss=TripletLoss(margin=0.2, mining="all"))
    model.save(tmp_path / "triplet.keras")
    loaded = keras.models.load_model(tmp_path / "triplet.keras", safe_mode=True)
    assert type(loaded.loss) is TripletLoss
    assert (loaded.loss.margin, loaded.loss.mining) == (0.2, "all")
