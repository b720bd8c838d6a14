"""Partial FC (``PartialFC(head, sample_rate)`` over every margin head): at sample_rate 1.0 the
loss and gradients of the full head; below it every positive class sampled, the logits the full
head's columns of the sampled classes, a static shape inside a compiled step that updates only
sampled centres."""

import json

import keras
import numpy as np
import pytest
from keras import ops

from kerasface.losses import AdaFace, PartialFC, margin_head
from kerasface.losses.partial_fc import MASKED_LOGIT

HEADS = ["softmax", "normface", "sphereface", "cosface", "arcface", "combined", "magface", "adaface"]
NUM_CLASSES, DIM, BATCH = 12, 6, 10


def data(seed=0, num_classes=NUM_CLASSES, batch=BATCH):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(DIM, num_classes)).astype("float32")
    # embeddings near their class centre, norms 5..120 (MagFace and AdaFace read the norm)
    labels = rng.integers(0, num_classes, batch).astype("int32")
    direction = centres[:, labels].T / np.linalg.norm(centres[:, labels].T, axis=1, keepdims=True)
    direction = direction + rng.normal(scale=0.6, size=direction.shape)
    norms = rng.uniform(5.0, 120.0, size=(batch, 1))
    x = (direction / np.linalg.norm(direction, axis=1, keepdims=True) * norms).astype("float32")
    return x, labels, centres


def make(name, centres, **kwargs):
    """A head with these (embedding_dim, num_classes) centres (a Partial FC head stores them
    class-major)."""
    head = margin_head(name, centres.shape[1], **kwargs)
    head.build((None, centres.shape[0]))
    head.centres.assign(centres.T if getattr(head, "head", head).class_major else centres)
    return head


def loss_and_gradients(head, x, labels, targets, training=True):
    """Mean softmax cross-entropy of head(x, labels) against ``targets`` plus the head's own
    losses, and its gradients with respect to x and the centres."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        x = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits = head(x, labels, training=training)
            loss = ops.mean(keras.losses.sparse_categorical_crossentropy(targets, logits, from_logits=True))
            loss += sum(head.losses)
        gx, gw = tape.gradient(loss, [x, head.centres.value])  # gw: IndexedSlices of gathered rows
        return float(loss), np.asarray(gx), np.asarray(tf.convert_to_tensor(gw))
    import jax

    def total(x, trainable):
        non_trainable = [v.value for v in head.non_trainable_variables]
        logits, _, losses = head.stateless_call(trainable, non_trainable, x, labels, training=training,
                                                return_losses=True)
        loss = ops.mean(keras.losses.sparse_categorical_crossentropy(targets, logits, from_logits=True))
        return loss + sum(losses)

    trainable = [v.value for v in head.trainable_variables]
    loss, (gx, gw) = jax.value_and_grad(total, argnums=(0, 1))(jax.numpy.asarray(x), trainable)
    return float(loss), np.asarray(gx), np.asarray(gw[0])


@pytest.mark.backend
@pytest.mark.parametrize("name", HEADS)
def test_sample_rate_one_gives_the_full_heads_loss_and_gradients(name):
    x, labels, centres = data()
    full, partial = make(name, centres), make(name, centres, sample_rate=1.0)
    assert partial.num_sample == NUM_CLASSES
    out = np.asarray(partial(x, labels))
    assert out.shape == (BATCH, 1 + NUM_CLASSES) and out.dtype == np.float32
    loss, gx, gw = loss_and_gradients(full, x, labels, labels)
    partial_loss, partial_gx, partial_gw = loss_and_gradients(partial, x, labels, np.zeros_like(labels))
    assert np.isfinite(loss) and loss > 0.1
    assert partial_loss == pytest.approx(loss, rel=1e-5)
    np.testing.assert_allclose(partial_gx, gx, rtol=1e-4, atol=1e-6 * np.abs(gx).max())
    assert partial_gw.shape == (NUM_CLASSES, DIM)  # class-major
    np.testing.assert_allclose(partial_gw.T, gw, rtol=1e-4, atol=1e-6 * np.abs(gw).max())
    assert np.abs(gw).max() > 0


def _cross_entropy64(logits, labels):
    logits = logits.astype(np.float64)
    top = logits.max(axis=1, keepdims=True)
    lse = np.log(np.exp(logits - top).sum(axis=1)) + top[:, 0]
    return float(np.mean(lse - logits[np.arange(len(labels)), labels]))


@pytest.mark.backend
def test_arcface_partial_logits_against_float64_numpy():
    """Column 0 = s cos(theta_y + m), the rest s cos theta_j of the sampled classes (the
    sample's own class masked); the loss is float64 cross-entropy over the sampled set."""
    x, labels, centres = data(seed=3, num_classes=200, batch=16)
    head = make("arcface", centres, sample_rate=0.25)
    state = np.asarray(head.seed_generator.state)
    out = np.asarray(head(x, labels)).astype(np.float64)
    head.seed_generator.state.assign(state)
    index = np.asarray(head.sample_classes(labels))
    xn = x.astype(np.float64) / np.linalg.norm(x, axis=1, keepdims=True)
    cn = centres.astype(np.float64) / np.linalg.norm(centres, axis=0, keepdims=True)
    cos = xn @ cn
    rows = np.arange(len(labels))
    theta = np.arccos(cos[rows, labels])
    target = np.where(theta + 0.5 <= np.pi, np.cos(theta + 0.5), cos[rows, labels] - 0.5 * np.sin(0.5))
    np.testing.assert_allclose(out[:, 0], 64 * target, atol=2e-4 * 64)
    own = index[None, :] == labels[:, None]
    np.testing.assert_allclose(out[:, 1:][~own], (64 * cos[:, index])[~own], atol=2e-4 * 64)
    assert (out[:, 1:][own] == np.float32(MASKED_LOGIT)).all() and own.sum(axis=1).tolist() == [1] * len(labels)
    # insightface's loss: cross-entropy over the sampled classes, the target's margin applied
    sampled = 64 * cos[:, index]
    remapped = np.argmax(own, axis=1)
    sampled[rows, remapped] = 64 * target
    loss = float(ops.mean(keras.losses.sparse_categorical_crossentropy(np.zeros(16, "int32"), out.astype("float32"),
                                                                       from_logits=True)))
    assert loss == pytest.approx(_cross_entropy64(sampled, remapped), rel=1e-5)


@pytest.mark.backend
@pytest.mark.parametrize("name", ["softmax", "cosface", "magface", "adaface"])
def test_sampled_set_holds_every_positive_and_gives_the_full_heads_columns(name):
    x, labels, centres = data(seed=1, num_classes=1000, batch=32)
    full, partial = make(name, centres), make(name, centres, sample_rate=0.1)
    assert partial.num_sample == 100
    expected = np.asarray(full(x, labels))
    state = np.asarray(partial.seed_generator.state)
    out = np.asarray(partial(x, labels))
    assert out.shape == (32, 101)
    partial.seed_generator.state.assign(state)
    index = np.asarray(partial.sample_classes(labels))
    assert index.shape == (100,) and len(set(index.tolist())) == 100 and set(labels.tolist()) <= set(index.tolist())
    rows = np.arange(32)
    tol = dict(rtol=1e-5, atol=1e-4 * (1.0 if name == "softmax" else partial.head.scale))
    np.testing.assert_allclose(out[:, 0], expected[rows, labels], **tol)
    own = index[None, :] == labels[:, None]
    np.testing.assert_allclose(out[:, 1:][~own], expected[:, index][~own], **tol)
    assert (out[:, 1:][own] == MASKED_LOGIT).all()


@pytest.mark.backend
def test_negatives_are_drawn_anew_each_call_and_uniformly():
    x, labels, centres = data(seed=2, num_classes=500, batch=8)
    head = make("arcface", centres, sample_rate=0.1)
    positives = set(labels.tolist())
    counts = np.zeros(500)
    draws = []
    for _ in range(200):
        index = np.asarray(head.sample_classes(labels))
        assert positives <= set(index.tolist())
        counts[index] += 1
        draws.append(frozenset(index.tolist()))
    assert len(set(draws)) == 200
    negatives = np.array([c for c in range(500) if c not in positives])
    expected = 200 * (50 - len(positives)) / len(negatives)  # each draw keeps 50 - |P| of the negatives
    assert counts[list(positives)].tolist() == [200] * len(positives)
    # binomial counts: mean within 3 standard errors, spread as a binomial's
    p = expected / 200
    assert abs(counts[negatives].mean() - expected) < 3 * np.sqrt(200 * p * (1 - p) / len(negatives))
    assert 0.7 < counts[negatives].std() / np.sqrt(200 * p * (1 - p)) < 1.3


@pytest.mark.backend
def test_more_classes_in_the_batch_than_the_sample_keeps_every_target():
    x, labels, centres = data(seed=4, num_classes=40, batch=16)
    labels = np.arange(16, dtype="int32")  # 16 distinct classes, num_sample 4
    full, partial = make("arcface", centres), make("arcface", centres, sample_rate=0.1)
    assert partial.num_sample == 4
    out = np.asarray(partial(x, labels))
    index = np.asarray(partial.sample_classes(labels))
    assert out.shape == (16, 5) and set(index.tolist()) <= set(range(16))
    np.testing.assert_allclose(out[:, 0], np.asarray(full(x, labels))[np.arange(16), labels], atol=1e-3)


@pytest.mark.backend
def test_sample_rate_is_checked_and_inference_keeps_every_class():
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="sample_rate"):
            margin_head("arcface", 10, sample_rate=bad)
    assert not isinstance(margin_head("arcface", 10), PartialFC)
    assert margin_head("cosface", 1000, sample_rate=0.0001).num_sample == 1
    x, labels, centres = data()
    full, partial = make("arcface", centres), make("arcface", centres, sample_rate=0.5)
    np.testing.assert_allclose(np.asarray(partial(x)), np.asarray(full(x)), rtol=1e-6, atol=1e-5)


def _head_model(name, centres, **kwargs):
    embeddings = keras.Input((DIM,), name="embeddings")
    labels = keras.Input((), dtype="int32", name="labels")
    head = make(name, centres, **kwargs)
    return keras.Model([embeddings, labels], head(embeddings, labels)), head


@pytest.mark.backend
def test_keras_round_trip_keeps_the_sample_rate(tmp_path):
    x, labels, centres = data()
    model, head = _head_model("adaface", centres, sample_rate=0.5)
    assert model.output.shape == (None, 7)
    model.save(tmp_path / "head.keras")
    loaded = keras.models.load_model(tmp_path / "head.keras", safe_mode=True)
    loaded_head = loaded.layers[-1]
    assert loaded_head.get_config() == head.get_config() and loaded_head.sample_rate == 0.5
    assert loaded.output.shape == (None, 7)
    np.testing.assert_array_equal(np.asarray(loaded_head.centres), centres.T)
    assert np.asarray(loaded([x, labels])).shape == (BATCH, 7)


OLD_HEAD_CONFIG = {  # an AdaFace head of a .keras file saved when Partial FC was a head option
    "module": "kerasface.losses.adaface", "class_name": "AdaFace", "registered_name": "kerasface>AdaFace",
    "config": {"name": "margin_head", "trainable": True,
               "dtype": {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"},
                         "registered_name": None},
               "num_classes": NUM_CLASSES, "scale": 64.0, "sample_rate": 0.5, "margin": 0.4, "h": 0.333,
               "t_alpha": 0.01},
}


@pytest.mark.backend
def test_a_head_config_with_a_sample_rate_loads_as_partial_fc():
    """The old form (``sample_rate`` in the head's config) gives PartialFC(head, sample_rate) with
    the same logits; the old file layout's weights are refused with a message naming the new form."""
    x, labels, centres = data()
    layer = keras.saving.deserialize_keras_object(OLD_HEAD_CONFIG, safe_mode=True)
    assert isinstance(layer, PartialFC) and type(layer.head) is AdaFace
    assert (layer.name, layer.sample_rate, layer.num_sample, layer.head.num_classes) == ("margin_head", 0.5, 6, 12)
    assert layer.head.get_config()["class_major"] and "sample_rate" not in layer.head.get_config()
    new = make("adaface", centres, sample_rate=0.5)
    layer.build((None, DIM))
    layer.centres.assign(centres.T)
    layer.seed_generator.state.assign(new.seed_generator.state)
    np.testing.assert_array_equal(np.asarray(layer(x, labels, training=True)),
                                  np.asarray(new(x, labels, training=True)))
    np.testing.assert_array_equal(np.asarray(layer(x)), np.asarray(new(x)))
    with pytest.raises(ValueError, match=r"margin_head\(name, num_classes, sample_rate=0.5\)"):
        layer.load_own_variables({})
    config = {**OLD_HEAD_CONFIG, "config": {**OLD_HEAD_CONFIG["config"], "sample_rate": None}}
    assert type(keras.saving.deserialize_keras_object(config, safe_mode=True)) is AdaFace


@pytest.mark.backend
def test_a_compiled_train_step_updates_only_the_sampled_centres():
    """One jit-compiled SGD step (XLA under TensorFlow, jax.jit under JAX) changes exactly
    num_sample centre columns (the sampled set, which holds the batch's classes); the next
    step samples other negatives."""
    x, labels, centres = data(seed=5, num_classes=300, batch=16)
    # scale 4: no softmax probability underflows, so every sampled centre moves
    model, head = _head_model("arcface", centres, sample_rate=0.1, scale=4.0)
    model.compile(keras.optimizers.SGD(0.5), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=True)
    targets = np.zeros_like(labels)
    changed = []
    for _ in range(2):
        before = np.asarray(head.centres).copy()
        loss = model.train_on_batch([x, labels], targets)
        assert np.isfinite(loss)
        changed.append(set(np.flatnonzero(np.abs(np.asarray(head.centres) - before).max(axis=1) > 0).tolist()))
    assert [len(c) for c in changed] == [30, 30]
    assert set(labels.tolist()) <= changed[0] & changed[1] and changed[0] != changed[1]


def test_benchmark_times_the_full_head_and_partial_fc():
    from kerasface.cli.benchmark_partial_fc import sample_rate
    from kerasface.benchmarks.partial_fc import PartialFCBenchmark, run_partial_fc_benchmark

    assert [sample_rate(t) for t in ("full", "1", "0.1")] == [None, None, 0.1]
    rows = [run_partial_fc_benchmark(PartialFCBenchmark(2000, "cosface", rate, batch_size=16, embedding_dim=32,
                                                        steps=2, warmup_steps=1))
            for rate in (None, 0.1)]
    assert [(r["sample_rate"], r["columns"]) for r in rows] == [("full", 2000), (0.1, 200)]
    for row in rows:
        assert row["step_ms"] > 0 and row["step_cpu_ms"] > 0 and np.isfinite(row["loss"])
        assert row["peak_host_mib"] >= row["host_mib_before"] > 0 and row["centres_mib"] == round(32 * 2000 * 4 / 2**20, 1)


def test_recognition_task_trains_with_partial_fc(tmp_path):
    from kerasface.cli.train_recognition import main
    from kerasface.datasets.demo import DemoConfig, generate_demo_dataset
    from kerasface.report import load_run_report

    demo = generate_demo_dataset(tmp_path / "demo", DemoConfig(identities=16, images_per_identity=4, image_size=32,
                                                              photometric=False), progress=False)
    tiny = dict(patch_size=8, dim=16, depth=1, heads=2, mlp_dim=32, dim_head=8, dropout=0.0, emb_dropout=0.0)
    argv = ["--data", str(demo / "images"), "--out", str(tmp_path / "runs"), "--run-id", "r", "--epochs", "1",
            "--backbone", "vit", "--backbone-kwargs", json.dumps(tiny), "--embedding-dim", "16",
            "--image-size", "32", "--no-tensorboard", "--batch-size", "8", "--validation-fraction", "0.2",
            "--loss-kwargs", json.dumps({"sample_rate": 0.5})]
    assert main(argv) == 0
    report = load_run_report(tmp_path / "runs" / "r")
    assert "Partial FC at sample rate 0.5" in report["card"]["layout"]
    assert np.isfinite(report["history"]["loss"][0]) and 0.0 <= report["history"]["accuracy"][0] <= 1.0
    assert 0.0 <= report["results"]["test"]["auc_cosine"] <= 1.0


SHARDED = r"""
import json
import jax, keras, numpy as np
from kerasface.losses import margin_head

rng = np.random.default_rng(0)
x = rng.normal(size=(16, 6)).astype("float32")
y = rng.integers(0, 200, 16).astype("int32")
mesh = keras.distribution.DeviceMesh((2,), ["batch"], jax.devices())
layout = keras.distribution.LayoutMap(mesh)
layout["margin_head/.*centres"] = ("batch", None)  # Partial FC's class-major centres: split the classes

def run(distribution):
    keras.utils.set_random_seed(1)
    with distribution.scope() if distribution else __import__("contextlib").nullcontext():
        embeddings, labels = keras.Input((6,)), keras.Input((), dtype="int32")
        head = margin_head("arcface", 200, sample_rate=0.1, scale=4.0, name="margin_head")
        model = keras.Model([embeddings, labels], head(embeddings, labels))
        model.compile(keras.optimizers.SGD(0.5, momentum=0.9),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        losses = [float(model.train_on_batch([x, y], np.zeros(16, "int32"))) for _ in range(3)]
        shards = [s.data.shape for s in head.centres.value.addressable_shards]
        momentum = [v for v in model.optimizer.variables if "centres" in v.path][0]
        return {"losses": losses, "centres": np.asarray(head.centres).tolist(), "shards": shards,
                "momentum_shards": [s.data.shape for s in momentum.value.addressable_shards]}

one = run(None)
split = run(keras.distribution.ModelParallel(layout_map=layout, batch_dim_name="batch"))
print("RESULT " + json.dumps({"one": one, "split": split}))
"""


def test_jax_model_parallel_splits_partial_fc_centres_across_devices(tmp_path):
    """The recipe docs/recognition.md gives: keras.distribution.ModelParallel with a LayoutMap that splits
    the class axis of Partial FC's centres over a 2-device mesh (each device holds half the
    centres and half their momentum); three SGD steps equal one device's."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("jax")
    env = {**os.environ, "KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
           "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-c", SHARDED], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.split("RESULT ", 1)[1].splitlines()[0])
    one, split = result["one"], result["split"]
    assert one["shards"] == [[200, 6]] and split["shards"] == [[100, 6], [100, 6]]
    assert split["momentum_shards"] == [[100, 6], [100, 6]]
    np.testing.assert_allclose(split["losses"], one["losses"], rtol=1e-5)
    np.testing.assert_allclose(np.asarray(split["centres"]), np.asarray(one["centres"]), atol=1e-5)
    assert one["losses"][2] < one["losses"][0]
