"""ONNX and LiteRT exports of an embedding model (an arcface_torch import at 32 px, width 8): kept
only when they agree with the Keras model, figures beside them, read back by evaluation."""

import json

import cv2
import numpy as np
import onnxruntime
import pytest
from skimage import data as skdata

import arcface_torch_files as files
from conftest import only_error_line
from kerasface.cli.export import main as export_main
from kerasface.eval.embeddings import extract_embeddings
from kerasface.export import portable
from kerasface.export.portable import Check, without_grouped_convs
from kerasface.interop import import_model
from kerasface.saving import load_model

SIZE = 32


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """(the imported .keras file, a folder of photographs)."""
    root = tmp_path_factory.mktemp("portable")
    _, write_onnx = files.iresnet((2, 2, 2, 2), width=8, size=SIZE, seed=7)
    path = root / "r18.keras"
    import_model(write_onnx(root / "r18.onnx")).save(path)
    photos = root / "photos"
    photos.mkdir()
    astronaut = skdata.astronaut()
    for k, crop in enumerate((astronaut, astronaut[:300, 100:400], astronaut[::-1], skdata.chelsea())):
        cv2.imwrite(str(photos / f"{k}.png"), cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2BGR))
    return path, photos


def test_onnx_export_is_kept_only_when_it_agrees_and_evaluation_reads_it(imported, tmp_path, capsys, snapshot,
                                                                         monkeypatch):
    model_path, photos = imported
    out = tmp_path / "r18.onnx"
    argv = ["--model", str(model_path), "--format", "onnx", "--images", str(photos), "--out", str(out)]
    with monkeypatch.context() as patch:
        patch.setitem(portable.CHECKS, "none", Check(relative_max_abs=-1.0, mean_cosine=1.0))
        before = snapshot(tmp_path)
        assert export_main(argv) == 1
        assert "differs from the Keras model" in only_error_line(capsys.readouterr().err)
        assert snapshot(tmp_path) == before
    assert export_main(argv) == 0
    figures = json.loads((tmp_path / "r18.onnx.json").read_text())
    assert figures["images"] == 4 and figures["max_abs_difference"] < 1e-4 and figures["mean_cosine"] > 0.99999
    assert figures["input_preprocessing"]["resize_mode"] == "stretch"
    # onnxruntime on the file against the Keras model, on images resized here
    model = load_model(model_path)
    images = np.stack([cv2.resize(cv2.imread(str(p))[:, :, ::-1], (SIZE, SIZE)).astype("float32")
                       for p in sorted(photos.iterdir())])
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    ours = session.run(None, {session.get_inputs()[0].name: images})[0]
    np.testing.assert_allclose(ours, model.predict_on_batch(images), atol=1e-4)
    paths = [str(p) for p in sorted(photos.iterdir())]
    np.testing.assert_allclose(extract_embeddings(out, paths, progress=False),
                               extract_embeddings(model_path, paths, progress=False), atol=1e-5)
    assert export_main(argv) == 1
    assert "r18.onnx: exists" in only_error_line(capsys.readouterr().err)


def test_litert_int8_export_is_calibrated_and_checked(imported, tmp_path, capsys):
    model_path, photos = imported
    out = tmp_path / "r18.tflite"
    argv = ["--model", str(model_path), "--format", "litert", "--images", str(photos), "--out", str(out),
            "--quantize", "int8"]
    assert export_main(argv) == 1
    assert "int8 quantization needs calibration images" in only_error_line(capsys.readouterr().err)
    assert not out.exists()
    assert export_main([*argv, "--calibration", str(photos)]) == 0
    figures = json.loads((tmp_path / "r18.tflite.json").read_text())
    assert figures["quantize"] == "int8" and figures["mean_cosine"] >= portable.CHECKS["int8"].mean_cosine
    assert out.stat().st_size < 0.5 * model_path.stat().st_size  # int8 weights
    # PReLU stays float32 (the LiteRT CPU delegate takes no int8 PRELU), the convolutions int8
    types = op_input_types(out)
    assert types["PRELU"] == {"float32"} and types["CONV_2D"] >= {"int8"}, types
    paths = [str(p) for p in sorted(photos.iterdir())]
    cosine = np.sum(extract_embeddings(out, paths, progress=False)
                    * extract_embeddings(model_path, paths, progress=False), axis=1)
    assert np.all(cosine > 0.98), cosine


def op_input_types(path) -> dict:
    """Op name -> the dtypes of its inputs, over the ops of a .tflite file."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_path=str(path),
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    dtypes = {t["index"]: t["dtype"].__name__ for t in interpreter.get_tensor_details()}
    types = {}
    for op in interpreter._get_ops_details():
        types.setdefault(op["op_name"], set()).update(dtypes[i] for i in op["inputs"] if i >= 0)
    return types


def test_the_litert_runner_uses_every_cpu_of_the_process(tmp_path, monkeypatch):
    import os

    import keras
    from ai_edge_litert import interpreter as interpreter_module

    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Dense(4)(keras.layers.Flatten()(inputs)))
    images = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    threads = []
    original = interpreter_module.Interpreter

    class Recording(original):
        def __init__(self, *args, **kwargs):
            threads.append(kwargs.get("num_threads"))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(interpreter_module, "Interpreter", Recording)
    portable.export_portable(model, tmp_path / "dense.tflite", "litert", images)
    _, predict = portable.litert_predictor(tmp_path / "dense.tflite")
    np.testing.assert_allclose(predict(images), model.predict_on_batch(images), rtol=1e-4, atol=1e-4)
    assert threads == [len(os.sched_getaffinity(0))] * 2  # the export's check, then the runner


def test_grouped_convs_become_block_diagonal_convs_computing_the_same():
    import keras

    from kerasface.models.iresnet import conv

    inputs = keras.Input((6, 6, 8))
    model = keras.Model(inputs, conv(inputs, 12, 3, 1, "grouped", groups=4))
    rng = np.random.default_rng(0)
    model.get_layer("grouped").kernel.assign(rng.normal(size=(3, 3, 2, 12)))
    plain = without_grouped_convs(model)
    assert plain.get_layer("grouped").groups == 1 and plain.get_layer("grouped").kernel.shape == (3, 3, 8, 12)
    images = rng.normal(size=(2, 6, 6, 8)).astype("float32")
    np.testing.assert_allclose(plain.predict_on_batch(images), model.predict_on_batch(images), rtol=1e-5, atol=1e-5)
