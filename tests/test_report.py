"""Run report: size/duration formats, report files on disk, per-label AUC, atomic writes.

Budget: about 10 s (five report writes with matplotlib, one in a subprocess).
"""

import json
import subprocess
import sys
import types

import numpy as np
import pytest
from matplotlib.image import imread
from sklearn.metrics import roc_auc_score

import kerasface.report.writer as writer
from kerasface.report import (
    format_bytes,
    format_duration,
    format_params,
    format_results,
    load_run_report,
    write_run_report,
)
from kerasface.report.history import shown_epochs

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_format_params_gives_the_notes_figures():
    assert format_params(24_707_394) == "24,707,394 (94.25 MB)"
    assert format_params(250_944) == "250,944 (980.25 KB)"
    assert format_params(65_146_290) == "65,146,290 (248.51 MB)"
    assert format_params(461_616) == "461,616 (1.76 MB)"
    assert format_params(np.int64(0)) == "0 (0 B)"
    with pytest.raises(ValueError, match="2.5"):
        format_params(2.5)


@pytest.mark.parametrize(
    "n, text",
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.00 KB"),
        (1536, "1.50 KB"),
        (1024**2 - 1, "1.00 MB"),  # 1023.999 KB rounds to 1024.00 KB, so the next unit
        (3 * 1024**3, "3.00 GB"),
        (1.37 * 1024**3, "1.37 GB"),
    ],
)
def test_format_bytes(n, text):
    assert format_bytes(n) == text


@pytest.mark.parametrize(
    "seconds, text",
    [
        (0, "0.0 s"),
        (42.08, "42.1 s"),
        (59.96, "1 min"),
        (90, "1 min 30 s"),
        (1800, "30 min"),
        (1830.4, "30 min 30 s"),
        (3599.6, "1 h"),
        (3600, "1 h"),
        (3725, "1 h 2 min"),
        (3750, "1 h 3 min"),  # 62.5 min: halves round up
        (100_000, "27 h 47 min"),
        (None, "-"),
    ],
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_format_duration_rejects_negative():
    with pytest.raises(ValueError, match="-1"):
        format_duration(-1)


def test_results_column_reads_like_the_notes():
    results = {
        "train": {"loss": 0.43741, "binary_accuracy": 0.80934},
        "validation": {"loss": 0.4314, "binary_accuracy": 0.8384},
        "test": {"loss": 0.4353, "binary_accuracy": 0.8069, "auc": 0.66021},
    }
    assert format_results(results, split={"train": 0.9, "validation": 0.1}) == (
        "train bin-acc 0.8093 loss 0.4374; val bin-acc 0.8384 loss 0.4314 (10%); "
        "test bin-acc 0.8069 AUC 0.6602 loss 0.4353"
    )


def test_shown_epochs_keeps_first_every_kth_and_last():
    assert shown_epochs(7) == [1, 2, 3, 4, 5, 6, 7]
    assert shown_epochs(10) == list(range(1, 11))
    assert shown_epochs(25) == [1, 3, 6, 9, 12, 15, 18, 21, 24, 25]
    assert shown_epochs(0) == []


CARD = {
    "run_id": "densenet121-3view",
    "base_model": "DenseNet121",
    "layout": "3 images -> 3x DenseNet121 -> Dense 256 ReLU -> Dense 10 sigmoid",
    "trainable_params": np.int64(24_707_394),
    "non_trainable_params": 250_944,
    "split": {"train": 0.5, "validation": 0.1, "test": 0.4},
    "learning_rate": 3e-4,
    "batch_size": 8,
    "epochs": 3,
    "wall_time_s": 3725.0,
    "data_time_s": 1740.0,
    "device": "P100 16 GB",
    "jit_compile": True,
    "image_size": (224, 224),
    "command": "python pipelines/train_branches.py | tee log",
    "notes_ref": "section 3",
}
HISTORY = {
    "loss": [np.float32(0.61), 0.5, 0.4374],
    "binary_accuracy": [0.7, 0.78, 0.8093],
    "auc": [0.6, 0.65, 0.7],
    "val_loss": [0.62, 0.51, 0.4314],
    "val_binary_accuracy": [0.71, 0.8, 0.8384],
    "val_auc": [0.58, 0.63, 0.69],
}
RESULTS = {
    "train": {"loss": 0.4374, "binary_accuracy": 0.8093},
    "validation": {"loss": 0.4314, "binary_accuracy": 0.8384},
    "test": {"loss": 0.4353, "binary_accuracy": 0.8069, "auc": 0.7297},
}


def _roc():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    return {
        "smiling": (y, 0.6 * y + rng.random(200)),
        "tiny": (np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])),
        "eyeglasses": (np.zeros(50), rng.random(50)),
    }


def _png_shape(path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 5_000
    return imread(path).shape


def test_write_run_report_writes_every_file(tmp_path):
    roc = _roc()
    report = write_run_report(tmp_path / "run", CARD, HISTORY, RESULTS, roc)
    run = tmp_path / "run"
    assert sorted(p.name for p in run.iterdir()) == [
        "loss.png", "metrics.png", "report.json", "report.md", "roc.png",
    ]  # fmt: skip
    assert report["plots"] == ["loss.png", "metrics.png", "roc.png"]

    loaded = load_run_report(run)
    assert loaded == report
    assert loaded["history"]["loss"] == pytest.approx([0.61, 0.5, 0.4374], abs=1e-7)
    assert loaded["card"]["trainable_params"] == 24_707_394
    assert loaded["parameter_sizes"]["trainable"] == {
        "params": 24_707_394, "bytes": 98_829_576, "text": "24,707,394 (94.25 MB)",
    }  # fmt: skip
    assert loaded["parameter_sizes"]["total"]["params"] == 24_958_338

    y, score = roc["smiling"]
    assert loaded["label_auc"]["smiling"] == pytest.approx(roc_auc_score(y, score), abs=1e-12)
    # pairs (pos, neg): 0.35>0.1, 0.35<0.4, 0.8>0.1, 0.8>0.4 -> 3 of 4
    assert loaded["label_auc"]["tiny"] == 0.75
    assert loaded["label_counts"]["tiny"] == {"positives": 2, "negatives": 2}
    assert loaded["mean_label_auc"] == pytest.approx((roc_auc_score(y, score) + 0.75) / 2)
    assert "eyeglasses" not in loaded["label_auc"]
    assert "one class" in loaded["skipped_labels"]["eyeglasses"]

    md = (run / "report.md").read_text(encoding="utf-8")
    assert md.startswith("# Run report: densenet121-3view\n")
    row = (
        "| DenseNet121 | 3 images -> 3x DenseNet121 -> Dense 256 ReLU -> Dense 10 sigmoid "
        "| trainable 24,707,394 (94.25 MB), non-trainable 250,944 (980.25 KB) "
        "| 3 epochs, 1 h 2 min (29 min of it loading data) | 8 "
        "| train bin-acc 0.8093 loss 0.4374; val bin-acc 0.8384 loss 0.4314 (10%); "
        "test bin-acc 0.8069 AUC 0.7297 loss 0.4353 (40%) | P100 16 GB |"
    )
    assert row in _squeeze(md)
    for field, value in [
        ("wall time", "1 h 2 min"),
        ("data-loading time", "29 min"),
        ("learning rate", "0.0003"),
        ("image size", "224x224"),
        ("XLA (jit_compile)", "yes"),
        ("seed", "-"),
        ("command", "python pipelines/train_branches.py \\| tee log"),
        ("notes ref", "section 3"),
    ]:
        assert f"| {field} | {value} |" in _squeeze(md)
    assert "| tiny | 0.7500 | 2 | 2 |" in _squeeze(md)
    assert "- `eyeglasses`: one class only in y_true (all 0, 50 samples)" in md
    assert "Epoch 3/3\n╒" in md
    assert "│ Metric          │ Train   │ Validation   │" in md
    assert "│ binary_accuracy │ 0.8093  │ 0.8384       │" in md
    assert "| loss | 0.6100 | 0.6200 | 0.5000 | 0.5100 | 0.4374 | 0.4314 |" in _squeeze(md)
    for name in report["plots"]:
        assert f"]({name})" in md

    assert _png_shape(run / "loss.png") == (450, 700, 4)
    assert _png_shape(run / "metrics.png") == (320, 840, 4)  # two panels: binary_accuracy, auc
    assert _png_shape(run / "roc.png") == (600, 700, 4)


def _squeeze(text: str) -> str:
    """Markdown with runs of spaces collapsed (tabulate pads columns)."""
    return "\n".join(" ".join(line.split()) for line in text.splitlines())


def test_many_epochs_all_in_json_some_in_md(tmp_path):
    n = 25
    history = types.SimpleNamespace(  # a keras.callbacks.History stand-in
        history={"loss": list(np.linspace(1, 0.1, n)), "val_loss": list(np.linspace(1.2, 0.3, n))}
    )
    report = write_run_report(tmp_path, {"epochs": 30}, history, {})
    assert report["epochs_run"] == n and len(load_run_report(tmp_path)["history"]["val_loss"]) == n
    assert report["run_id"] == tmp_path.name
    assert report["notes_row"]["epochs, time"] == "25 of 30 epochs, -"
    assert report["plots"] == ["loss.png"]  # no other metric, no roc
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    shown = [e for e in range(1, n + 1) if f"Epoch {e}/{n}\n" in md]
    assert shown == shown_epochs(n)
    assert "| base | - |" not in md and "| - | - | - | 25 of 30 epochs, - | - | - | - |" in _squeeze(md)


def test_mismatched_roc_arrays_name_the_label(tmp_path):
    with pytest.raises(ValueError, match="'smiling'.*3 values.*2"):
        write_run_report(tmp_path, {}, {}, {}, {"smiling": ([0, 1, 1], [0.2, 0.3])})


def test_interrupted_write_keeps_the_old_report(tmp_path, monkeypatch):
    write_run_report(tmp_path, CARD, HISTORY, RESULTS)
    before = (tmp_path / "report.json").read_bytes()

    def dump_then_fail(obj, fh, **kwargs):
        fh.write('{"card": {"run_id": "half')
        raise RuntimeError("disk full")

    monkeypatch.setattr(writer.json, "dump", dump_then_fail)
    with pytest.raises(RuntimeError, match="disk full"):
        write_run_report(tmp_path, {**CARD, "run_id": "second"}, HISTORY, RESULTS)
    assert (tmp_path / "report.json").read_bytes() == before
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.undo()
    assert load_run_report(tmp_path)["run_id"] == "densenet121-3view"


def test_load_run_report_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "report.json")):
        load_run_report(tmp_path)
    (tmp_path / "report.json").write_text('{"card": ', encoding="utf-8")
    with pytest.raises(ValueError, match="report.json is not valid JSON"):
        load_run_report(tmp_path)
    (tmp_path / "report.json").write_text(json.dumps([1, 2]), encoding="utf-8")
    with pytest.raises(ValueError, match="not a run report"):
        load_run_report(tmp_path / "report.json")


def test_writing_does_not_import_pyplot(tmp_path):
    code = (
        "import sys;"
        "from kerasface.report import write_run_report;"
        f"write_run_report({str(tmp_path)!r}, {{}}, {{'loss': [1.0, 0.5]}}, {{}});"
        "assert 'matplotlib.pyplot' not in sys.modules;"
        "print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
    assert (tmp_path / "loss.png").read_bytes()[:8] == PNG_MAGIC
