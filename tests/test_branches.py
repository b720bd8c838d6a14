"""Multi-branch models on a tiny ViT backbone: every head trains, vote arithmetic by hand,
weight sharing, freezing, weight transfer and .keras round trips. Budget: ~40 s on 2 cores."""

import warnings

import keras
import numpy as np
import pytest

from kerasface.models import (
    branch_models,
    build_branch_model,
    init_branches_from,
    set_branch_trainable,
)

SHAPE = (16, 16, 3)
TINY_VIT = dict(
    patch_size=8, dim=16, depth=1, heads=2, dim_head=8, mlp_dim=32, dropout=0.0, emb_dropout=0.0
)


def tiny_model(**kwargs):
    options = dict(
        backbone="vit",
        num_branches=3,
        input_shape=SHAPE,
        num_outputs=4,
        hidden_units=8,
        embedding_dim=6,
        backbone_kwargs=dict(TINY_VIT),
    )
    options.update(kwargs)
    return build_branch_model(**options)


def views(n=3, batch=4, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.uniform(0, 255, size=(batch, *SHAPE)).astype("float32") for _ in range(n)]


def weights_of(model):
    return [np.array(v) for v in model.weights]


def fit_one_step(model, x, targets, learning_rate=0.1, run_eagerly=True):
    """One SGD step of mean squared error; eager by default, as tracing or XLA-compiling a
    train step costs seconds per model."""
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate),
        loss="mse",
        run_eagerly=run_eagerly,
        jit_compile=False,
    )
    history = model.fit(x, targets, batch_size=len(targets), epochs=1, verbose=0)
    return history.history["loss"][0]


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


@pytest.mark.backend
@pytest.mark.parametrize(
    "head, vote, width, head_layer",
    [
        ("concat", "mean", 4, "output"),
        ("vote", "mean", 4, "vote_logits_0"),
        ("vote", "sum", 4, "vote_logits_0"),
        ("vote", "learned", 4, "output"),
        ("embedding", "mean", 6, "embedding_projection"),
    ],
)
def test_every_head_trains_one_step(head, vote, width, head_layer):
    keras.utils.set_random_seed(0)
    model = tiny_model(head=head, vote=vote)
    x = views()
    head_kernel = model.get_layer(head_layer).weights[0]
    branch_kernel = branch_models(model)[2].get_layer("patch_embedding").weights[0]
    head_before, branch_before = np.array(head_kernel), np.array(branch_kernel)
    loss = fit_one_step(model, x, np.random.default_rng(1).uniform(size=(4, width)))
    out = np.asarray(model(x))
    assert np.isfinite(loss)
    assert out.shape == (4, width)
    assert out.dtype == np.float32
    assert not np.array_equal(head_before, np.asarray(head_kernel))
    assert not np.array_equal(branch_before, np.asarray(branch_kernel))
    if head == "embedding":
        np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    else:
        assert ((out > 0) & (out < 1)).all()


def _branch_logits(model, x):
    logits = []
    for i, (branch, image) in enumerate(zip(branch_models(model), x)):
        features = np.asarray(branch(image), np.float64)
        classifier = model.get_layer(f"vote_logits_{i}")
        kernel, bias = (np.asarray(v, np.float64) for v in classifier.weights)
        logits.append(features @ kernel + bias)
    return logits


@pytest.mark.backend
def test_vote_mean_is_the_mean_of_branch_probabilities():
    keras.utils.set_random_seed(2)
    model = tiny_model(head="vote", vote="mean")
    x = views(seed=3)
    expected = np.mean([sigmoid(z) for z in _branch_logits(model, x)], axis=0)
    np.testing.assert_allclose(np.asarray(model(x)), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.backend
def test_vote_sum_is_the_activation_of_summed_logits():
    keras.utils.set_random_seed(4)
    model = tiny_model(head="vote", vote="sum")
    x = views(seed=5)
    expected = sigmoid(np.sum(_branch_logits(model, x), axis=0))
    np.testing.assert_allclose(np.asarray(model(x)), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.backend
def test_shared_weights_use_one_backbone():
    keras.utils.set_random_seed(6)
    shared = tiny_model(shared_weights=True)
    separate = tiny_model()
    branch = branch_models(shared)
    assert len(branch) == 3 and branch[0] is branch[1] is branch[2]
    assert branch[0].name == "branch_0"
    backbone_params = branch[0].count_params()
    assert separate.count_params() - shared.count_params() == 2 * backbone_params
    x = views(seed=7)
    same_view = [x[0], x[0], x[0]]
    features = shared.get_layer("branch_features").output
    probe = keras.Model(shared.inputs, features)
    f = np.asarray(probe(same_view))
    np.testing.assert_array_equal(f[:, :16], f[:, 16:32])
    np.testing.assert_array_equal(f[:, :16], f[:, 32:])


@pytest.mark.backend
def test_frozen_branch_stays_bit_identical_and_unfreezing_trains_it():
    keras.utils.set_random_seed(8)
    model = tiny_model(frozen_branches=(1,))
    x, targets = views(seed=9), np.random.default_rng(10).uniform(size=(4, 4))
    branches = branch_models(model)
    before = [weights_of(b) for b in branches]
    fit_one_step(model, x, targets, run_eagerly=False)
    for i, branch in enumerate(branches):
        same = all(np.array_equal(b, a) for b, a in zip(before[i], weights_of(branch)))
        assert same == (i == 1), f"branch_{i}"

    set_branch_trainable(model, [1], True)
    frozen_before = weights_of(branches[1])
    fit_one_step(model, x, targets)
    assert not all(np.array_equal(b, a) for b, a in zip(frozen_before, weights_of(branches[1])))


def test_branch_index_errors():
    with pytest.raises(ValueError, match=r"frozen_branches: branch indices \[3\] are out of range"):
        tiny_model(frozen_branches=(3,))
    with pytest.raises(ValueError, match="freeze or unfreeze all 3 of them or none"):
        tiny_model(shared_weights=True, frozen_branches=(0,))
    with pytest.raises(KeyError, match="unknown head 'mlp'; choose one of: concat, embedding"):
        tiny_model(head="mlp")
    with pytest.raises(ValueError, match="vote 'max' is not one of mean, sum, learned"):
        tiny_model(head="vote", vote="max")
    with pytest.raises(ValueError, match="input_names"):
        tiny_model(input_names=["left", "right"])


@pytest.mark.backend
def test_input_names_and_single_branch():
    model = tiny_model(input_names=["albedo", "normal", "depth"])
    assert [t.name for t in model.inputs] == ["albedo", "normal", "depth"]
    single = tiny_model(num_branches=1, head="embedding")
    out = np.asarray(single(views(n=1)[0]))
    assert len(single.inputs) == 1 and out.shape == (4, 6)
    assert [b.name for b in branch_models(single)] == ["branch_0"]


@pytest.mark.backend
def test_init_branches_from_a_saved_single_branch_run(tmp_path):
    keras.utils.set_random_seed(11)
    run = tiny_model(num_branches=1, head="embedding")
    path = tmp_path / "single.keras"
    run.save(path)
    donor = weights_of(run.get_layer("branch_0"))

    model = tiny_model()
    untouched = weights_of(branch_models(model)[2])
    assert init_branches_from(model, str(path), indices=[0, 1]) == [0, 1]
    branches = branch_models(model)
    for i in (0, 1):
        for expected, actual in zip(donor, weights_of(branches[i])):
            np.testing.assert_array_equal(actual, expected)
    for expected, actual in zip(untouched, weights_of(branches[2])):
        np.testing.assert_array_equal(actual, expected)

    bare = run.get_layer("branch_0")
    init_branches_from(model, bare, indices=[2])
    np.testing.assert_array_equal(weights_of(branches[2])[0], donor[0])


def test_init_branches_from_refuses_a_different_backbone():
    model = tiny_model()
    wider = tiny_model(num_branches=1, backbone_kwargs={**TINY_VIT, "dim": 24})
    with pytest.raises(ValueError, match="has shape .*24.* but .* of branch_0 has shape .*16"):
        init_branches_from(model, wider)


@pytest.mark.backend
def test_keras_round_trip_with_every_custom_layer(tmp_path):
    keras.utils.set_random_seed(12)
    model = tiny_model(head="embedding", backbone_kwargs={**TINY_VIT, "dropout": 0.1})
    path = tmp_path / "embedding.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    x = views(seed=13)
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(model(x)))
    layer_types = {type(layer).__name__ for layer in loaded.get_layer("branch_1").layers}
    assert {"ImagePreprocessing", "PatchExtract", "ClassToken", "PositionEmbedding",
            "MultiHeadSelfAttention", "ClassTokenPool"} <= layer_types
    assert type(loaded.get_layer("output")).__name__ == "L2Normalize"


@pytest.mark.backend
def test_mixed_precision_keeps_float32_outputs():
    previous = keras.config.dtype_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = tiny_model(head="vote", vote="learned")
        out = model(views(batch=2))
        assert model.get_layer("vote_hidden").compute_dtype == "float16"
    finally:
        keras.mixed_precision.set_global_policy(previous)
    assert keras.backend.standardize_dtype(out.dtype) == "float32"


@pytest.mark.backend
def test_frozen_branch_stays_frozen_with_its_optimizer_state_after_loading(tmp_path):
    model = tiny_model(frozen_branches=[1])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    model.optimizer.build(model.trainable_variables)
    path = tmp_path / "frozen.keras"
    model.save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = keras.models.load_model(path, safe_mode=True)
    assert len(loaded.trainable_variables) == len(model.trainable_variables)
    assert not any(v.trainable for v in loaded.get_layer("branch_1").weights)
    assert len(loaded.optimizer.variables) == len(model.optimizer.variables)
