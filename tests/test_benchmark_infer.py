"""kerasface-benchmark-infer on a tiny embedding model: one row per format, positive figures,
sizes that are the exported files' sizes."""

import json
import os
from pathlib import Path

import keras
import pytest

from kerasface.cli import benchmark_infer
from kerasface.models import ImagePreprocessing
from kerasface.models.preprocessing import set_input_preprocessing

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the exports need TensorFlow")
FORMATS = ["keras", "savedmodel", "onnx", "litert", "litert-float16", "litert-int8"]


def tiny_model(path):
    keras.utils.set_random_seed(0)
    images = keras.Input((16, 16, 3))
    x = ImagePreprocessing("tf", name="preprocessing")(images)
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu")(x)
    model = keras.Model(images, keras.layers.Dense(6)(keras.layers.GlobalAveragePooling2D()(x)), name="tiny")
    set_input_preprocessing(model, resize_mode="pad").save(path)
    return path


def test_one_row_per_format_with_positive_figures_and_the_files_sizes(tmp_path, capsys):
    tiny_model(tmp_path / "tiny.keras")

    assert benchmark_infer.main(["--model", str(tmp_path / "tiny.keras"), "--formats", *FORMATS, "--runs", "3",
                                 "--warmup", "1", "--batch-size", "4", "--batch-runs", "1",
                                 "--keep", str(tmp_path / "exports")]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [row["format"] for row in rows] == FORMATS
    for row in rows:
        assert row["latency_ms_p50"] > 0 and row["images_per_s"] > 0
        path = row["path"]
        files = [os.path.join(d, f) for d, _, names in os.walk(path) for f in names] if os.path.isdir(path) else [path]
        assert row["size_bytes"] == sum(os.path.getsize(f) for f in files) > 0
    by_format = {row["format"]: row for row in rows}
    assert by_format["keras"]["size_bytes"] == (tmp_path / "tiny.keras").stat().st_size
    assert Path(by_format["savedmodel"]["path"], "saved_model.pb").is_file()
    assert by_format["litert-int8"]["calibration"] == "32 synthetic images"


def test_an_export_failing_its_check_is_an_error_row_and_status_1(tmp_path, capsys, monkeypatch):
    from kerasface.benchmarks import infer as benchmark

    def fails(name, *args):
        if name == "onnx":
            raise RuntimeError("the onnx export differs from the Keras model")
        return original(name, *args)

    original = benchmark.export_format
    monkeypatch.setattr(benchmark, "export_format", fails)
    assert benchmark_infer.main(["--model", str(tiny_model(tmp_path / "tiny.keras")), "--formats", "onnx", "keras",
                                 "--runs", "1", "--warmup", "0", "--batch-size", "2", "--batch-runs", "1"]) == 1
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert rows[0] == {"format": "onnx", "error": "the onnx export differs from the Keras model"}
    assert rows[1]["format"] == "keras" and rows[1]["images_per_s"] > 0
