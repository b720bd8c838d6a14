"""Importing arcface_torch models: ONNX graphs in torch2onnx's export layout and torch.save'd state
dicts, written here without torch (tests/arcface_torch_files.py), against onnxruntime on the
source graph; refusal of malicious pickles and of files that do not map."""

import collections
import json
import os
import pickle
import re
import zipfile

import cv2
import keras
import numpy as np
import onnxruntime
import pytest
from skimage import data as skdata

import arcface_torch_files as files
from conftest import only_error_line
from kerasface.cli.import_model import main as import_main
from kerasface.errors import BadInputError
from kerasface.interop import import_model, import_with_layout
from kerasface.interop.arcface_torch import identity_with_offset
from kerasface.interop.torch_zip import load_state_dict
from kerasface.models.preprocessing import input_preprocessing
from kerasface.saving import load_model

SIZE = 32


def faces(size=SIZE):
    """The astronaut photograph and a noise image, RGB float32 in [0, 255]."""
    photo = cv2.resize(skdata.astronaut(), (size, size), interpolation=cv2.INTER_AREA).astype("float32")
    noise = np.random.default_rng(0).uniform(0, 255, (size, size, 3)).astype("float32")
    return np.stack([photo, noise])


def onnxruntime_embeddings(path, images):
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return session.run(None, {name: ((images - 127.5) / 127.5).transpose(0, 3, 1, 2)})[0]


def agreement(model, path, images):
    """(max abs difference, smallest cosine) of the model's embeddings and onnxruntime's."""
    ours = np.asarray(model.predict_on_batch(images), np.float64)
    theirs = onnxruntime_embeddings(path, images).astype(np.float64)
    cosine = np.sum(ours * theirs, 1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
    return float(np.max(np.abs(ours - theirs))), float(np.min(cosine))



LAYOUTS = {
    "iresnet18": lambda: files.iresnet((2, 2, 2, 2), width=8, size=SIZE, seed=1),
    "iresnet50": lambda: files.iresnet((3, 4, 14, 3), width=8, size=SIZE, seed=2),
    "mobilefacenet": lambda: files.mobilefacenet(scale=2, size=SIZE, seed=3),
}


@pytest.mark.backend
@pytest.mark.parametrize("backbone", list(LAYOUTS))
def test_onnx_import_equals_onnxruntime_on_the_source_graph(tmp_path, backbone):
    _, write_onnx = LAYOUTS[backbone]()
    path = write_onnx(tmp_path / f"{backbone}.onnx")
    model, layout = import_with_layout(path)
    assert layout.backbone == backbone and layout.input_size == SIZE and layout.embedding_dim == 16
    assert model.input_shape == (None, SIZE, SIZE, 3) and model.output_shape == (None, 16)
    max_abs, cosine = agreement(model, path, faces())
    assert max_abs < 1e-4 and cosine > 0.99999, (max_abs, cosine)
    recorded = input_preprocessing(model)
    assert (recorded.value_range, recorded.resize_mode, recorded.alignment) == ("tf", "stretch", "arcface")


@pytest.mark.backend
@pytest.mark.parametrize("backbone", ["iresnet18", "mobilefacenet"])
def test_state_dict_import_equals_onnxruntime_on_its_export(tmp_path, backbone):
    """The .pt keeps every batch norm apart; its eval-mode ONNX export has them folded."""
    state, write_onnx = LAYOUTS[backbone]()
    onnx_path = write_onnx(tmp_path / "export.onnx")
    pt = files.write_state_dict(state, tmp_path / "backbone.pt")
    assert set(load_state_dict(pt)) == set(state)
    model = import_model(pt, backbone=backbone)
    max_abs, cosine = agreement(model, onnx_path, faces())
    assert max_abs < 1e-4 and cosine > 0.99999, (max_abs, cosine)


@pytest.mark.slow
def test_full_width_iresnet18_at_112(tmp_path):
    _, write_onnx = files.iresnet((2, 2, 2, 2), width=64, size=112, dim=512, seed=4)
    path = write_onnx(tmp_path / "r18.onnx")
    model, layout = import_with_layout(path, backbone="iresnet18")
    assert layout.options == () and layout.input_size == 112
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == 24_025_088
    max_abs, cosine = agreement(model, path, faces(112))
    assert max_abs < 1e-4 and cosine > 0.99999, (max_abs, cosine)


def test_folded_batch_norm_is_exactly_x_plus_bias():
    """gamma 1, mean 0 and the float32 variance whose sum with epsilon rounds to 1."""
    import keras

    bias = np.random.default_rng(0).normal(size=8)
    layer = keras.layers.BatchNormalization(epsilon=1e-5)
    layer.build((None, 8))
    layer.set_weights([v.astype("float32") for v in identity_with_offset(bias, 1e-5)])
    x = np.random.default_rng(1).normal(size=(4, 8)).astype("float32")
    np.testing.assert_array_equal(np.asarray(layer(x, training=False)), x + bias.astype("float32"))


def test_import_command_writes_a_keras_file_that_loads_safely(tmp_path, capsys):
    _, write_onnx = LAYOUTS["mobilefacenet"]()
    source = write_onnx(tmp_path / "w600k_mbf.onnx")
    out = tmp_path / "models" / "mbf.keras"
    assert import_main([str(source), "--out", str(out)]) == 0
    assert "mobilefacenet, scale=2, 32x32 input, 16-d embedding" in capsys.readouterr().out
    loaded = load_model(out)
    max_abs, _ = agreement(loaded, source, faces())
    assert max_abs < 1e-4
    assert input_preprocessing(loaded).alignment == "arcface"
    assert [p.name for p in out.parent.iterdir()] == ["mbf.keras"]


# --- refused files -------------------------------------------------------------------------------


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_pickle_that_runs_code_is_refused_without_running(tmp_path, capsys, snapshot):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    files.write_archive(evil, "evil", pickle.dumps(collections.OrderedDict(w=_Evil(marker)), protocol=2), {})
    with pytest.raises(BadInputError, match=r"refused posix\.system|refused os\.system"):
        load_state_dict(evil)
    assert not marker.exists()
    before = snapshot(tmp_path)
    assert import_main([str(evil), "--out", str(tmp_path / "m.keras")]) == 1
    assert "refused" in only_error_line(capsys.readouterr().err)
    assert not marker.exists() and snapshot(tmp_path) == before
    # an arbitrary class of the training code is refused just the same
    other = tmp_path / "class.pt"
    files.write_archive(other, "class", pickle.dumps(collections.Counter(a=1), protocol=2), {})
    with pytest.raises(BadInputError, match=r"refused collections\.Counter"):
        load_state_dict(other)


def _mutated(state, change):
    state = collections.OrderedDict(state)
    change(state)
    return state


STATE_ERRORS = {
    "missing": (lambda s: s.pop("layer2.1.conv1.weight"), r"missing 1 entries: layer2\.1\.conv1\.weight"),
    "extra": (lambda s: s.__setitem__("head.extra.weight", np.ones(3)), r"map to no layer.*head\.extra\.weight"),
    "shape": (lambda s: s.__setitem__("layer3.0.prelu.weight", np.ones(5)),
              r"layer3\.0\.prelu\.weight has 5 slopes, the kit's stage3_block0_act needs 32"),
    "kernel": (lambda s: s.__setitem__("layer1.1.conv2.weight", np.ones((8, 8, 1, 1))),
               r"layer1\.1\.conv2\.weight has shape \(8, 8, 1, 1\), the kit's layer needs \(8, 8, 3, 3\)"),
    "depth": (lambda s: [s.pop(k) for k in list(s) if k.startswith("layer4.1.")], r"\[2, 2, 2, 1\] blocks"),
}


@pytest.fixture(scope="module")
def iresnet18_state():
    return LAYOUTS["iresnet18"]()[0]


@pytest.mark.parametrize("case", list(STATE_ERRORS))
def test_state_dict_that_does_not_map_is_refused_by_name(tmp_path, capsys, snapshot, iresnet18_state, case):
    change, message = STATE_ERRORS[case]
    pt = files.write_state_dict(_mutated(iresnet18_state, change), tmp_path / "bad.pt")
    before = snapshot(tmp_path)
    assert import_main([str(pt), "--out", str(tmp_path / "out.keras")]) == 1
    line = only_error_line(capsys.readouterr().err)
    assert "bad.pt" in line
    assert re.search(message, line), line
    assert snapshot(tmp_path) == before


def _other_architecture(path):
    """A plain CNN: Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm."""
    import onnx
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(size=s).astype("float32"), n)
             for n, s in (("w", (8, 3, 3, 3)), ("fc", (4, 8)))]
    nodes = [helper.make_node("Conv", ["data", "w"], ["c"], name="conv_0", kernel_shape=[3, 3], pads=[1] * 4),
             helper.make_node("Relu", ["c"], ["r"], name="relu_1"),
             helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool_2"),
             helper.make_node("Flatten", ["p"], ["f"], name="flatten_3"),
             helper.make_node("Gemm", ["f", "fc"], ["out"], name="gemm_4", transB=1)]
    graph = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("data", 1, [1, 3, 32, 32])],
                              [helper.make_tensor_value_info("out", 1, [1, 4])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)]), str(path))
    return path


def test_onnx_files_that_do_not_map_are_refused_by_name(tmp_path, capsys, snapshot):
    _, write_onnx = LAYOUTS["iresnet18"]()
    good = write_onnx(tmp_path / "r18.onnx")
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    text = tmp_path / "notes.onnx"
    text.write_text("not a graph\n")
    cases = {
        truncated: "truncated.onnx: not an ONNX model",
        text: "notes.onnx: not an ONNX model",
        _other_architecture(tmp_path / "cnn.onnx"): "'relu_1' (Relu)",
        good: "holds a iresnet18, not the mobilefacenet asked for",
    }
    for path, message in cases.items():
        before = snapshot(tmp_path)
        extra = ["--backbone", "mobilefacenet"] if path == good else []
        assert import_main([str(path), "--out", str(tmp_path / "out.keras"), *extra]) == 1
        line = only_error_line(capsys.readouterr().err)
        assert message in line, line
        assert snapshot(tmp_path) == before


def test_not_a_state_dict_zip_and_existing_output_are_refused(tmp_path, capsys):
    legacy = tmp_path / "legacy.pt"
    legacy.write_bytes(pickle.dumps({"w": 1}))
    assert import_main([str(legacy), "--out", str(tmp_path / "a.keras")]) == 1
    assert "legacy.pt: not a torch.save zip file" in only_error_line(capsys.readouterr().err)
    script = tmp_path / "script.pt"
    with zipfile.ZipFile(script, "w") as z:
        z.writestr("script/data.pkl", pickle.dumps(collections.OrderedDict(), protocol=2))
        z.writestr("script/constants.pkl", b"")
    assert import_main([str(script), "--out", str(tmp_path / "a.keras")]) == 1
    assert "a TorchScript archive" in only_error_line(capsys.readouterr().err)
    taken = tmp_path / "taken.keras"
    taken.write_text("keep")
    assert import_main([str(legacy), "--out", str(taken)]) == 1
    assert "taken.keras: exists" in only_error_line(capsys.readouterr().err)
    assert taken.read_text() == "keep" and not (tmp_path / "a.keras").exists()


# --- fine-tuning an imported model ----------------------------------------------------------------


class _Probe(keras.callbacks.Callback):
    """The embeddings before the first step; the embedding model's and the head's weights after
    each epoch."""

    def __init__(self, images):
        super().__init__()
        self.images, self.embeddings, self.weights = images, None, []

    def on_train_batch_begin(self, batch, logs=None):
        if self.embeddings is None:
            self.embeddings = np.asarray(self.model.get_layer("embedding").predict_on_batch(self.images))

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append({layer: [np.array(w) for w in self.model.get_layer(layer).weights]
                             for layer in ("embedding", "margin_head")})


def test_train_recognition_init_fine_tunes_an_imported_model_with_the_backbone_frozen_first(tmp_path, capsys):
    from kerasface.cli.train_recognition import DEFAULTS, main as train_main
    from kerasface.datasets.demo import DemoConfig, generate_demo_dataset
    from kerasface.models.embedding import load_embedding_model
    from kerasface.train.config import TrainConfig
    from kerasface.train.run import train

    _, write_onnx = LAYOUTS["iresnet18"]()
    imported = tmp_path / "r18.keras"
    assert import_main([str(write_onnx(tmp_path / "r18.onnx")), "--out", str(imported)]) == 0
    demo = generate_demo_dataset(tmp_path / "demo", DemoConfig(identities=8, images_per_identity=4, image_size=SIZE,
                                                              photometric=False), progress=False)
    with pytest.raises(BadInputError, match="r18.keras: takes .* images, this run .*; pass --image-size 32"):
        load_embedding_model(imported, (40, 40, 3), 16)
    assert train_main(["--data", str(demo / "images"), "--image-size", str(SIZE), "--embedding-dim", "16",
                       "--init", str(imported), "--freeze-backbone-epochs", "1", "--dry-run"]) == 0
    counts = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    head = 16 * 8  # ArcFace's weights: embedding_dim x the dataset's identities
    assert counts["trainable_params"] + counts["non_trainable_params"] == load_model(imported).count_params() + head

    images = faces()
    probe = _Probe(images)
    config = TrainConfig.from_dict({
        **DEFAULTS, "path": str(demo / "images"), "image_size": SIZE, "embedding_dim": 16, "init": str(imported),
        "epochs": 2, "freeze_backbone_epochs": 1, "batch_size": 8, "max_steps_per_epoch": 2,
        "validation_fraction": 0.0, "test_fraction": 0.25, "out": str(tmp_path / "runs"), "run_id": "tuned",
        "tensorboard": False})
    run_dir = train(config, log=lambda *_: None, callbacks=[probe])
    initial = load_model(imported)
    before = np.asarray(initial.predict_on_batch(images))
    np.testing.assert_allclose(probe.embeddings, before, atol=1e-5)
    # epoch 1 trained the head only (batch-norm statistics included), epoch 2 the whole model
    (first, second), weights = probe.weights, [np.asarray(w) for w in initial.weights]
    assert all(np.array_equal(a, b) for a, b in zip(first["embedding"], weights))
    assert not np.array_equal(first["margin_head"][0], second["margin_head"][0])
    assert not all(np.array_equal(a, b) for a, b in zip(second["embedding"], weights))
    assert load_embedding_model(run_dir, (SIZE, SIZE, 3), 16).trainable
