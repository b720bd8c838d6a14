"""The data report, the input benchmark and the train benchmark on small real inputs."""

import pytest

from kerasface.benchmarks.input import benchmark_input
from kerasface.data.pipeline import InputConfig
from kerasface.data.readers import read_image_folder
from kerasface.data.stats import dataset_report
from kerasface.models.embedding import build_embedding_model
from kerasface.benchmarks.train_step import TrainBenchmark, run_train_benchmark
from kerasface.train.runtime import resolve_runtime


def test_dataset_report_counts_identities_and_names_the_broken_file(image_folder, snapshot):
    bad = image_folder / "person_1" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    before = snapshot(image_folder)
    text, skipped = dataset_report(image_folder)
    assert [s.path for s in skipped] == [str(bad)]
    assert "12 samples, 3 identities" in text and "broken.png" in text
    assert snapshot(image_folder) == before


def test_input_benchmark_reports_every_stage(image_folder):
    _, spec = read_image_folder(image_folder)
    rows = benchmark_input(spec, InputConfig(16, "crops-vertical"), batch_size=4, seconds=0.2)
    assert [r["stage"] for r in rows] == ["decode", "decode+resize+crops", "full training pipeline"]
    for row in rows:
        assert row["batches"] > 0
        assert row["images"] == row["batches"] * 4  # counted from the batches: every one is full


def test_train_benchmark_times_the_step_and_counts_parameters():
    bench = TrainBenchmark("vit", branches=2, image_size=16, batch_size=4, steps=2, warmup_steps=1,
                           backbone_kwargs=dict(patch_size=8, dim=8, depth=1, heads=1, dim_head=8, mlp_dim=8))
    row = run_train_benchmark(bench)
    assert row["optimizer_steps"] == 3  # warm-up and timed steps really trained
    assert row["step_ms_median"] > 0 and row["samples_per_s"] > 0 and row["peak_host_mib"] > 0
    auto = resolve_runtime()
    assert (row["jit_compile"], row["mixed_precision"]) == (auto.jit_compile, auto.precision)


def test_recognition_train_benchmark_trains_the_embedding_and_margin_head():
    """--loss arcface: the embedding backbone plus a head of num_classes centres (512 x classes)."""
    bench = TrainBenchmark("vit", branches=1, image_size=16, batch_size=4, steps=1, warmup_steps=1, loss="arcface",
                           num_classes=7, embedding_dim=8,
                           backbone_kwargs=dict(patch_size=8, dim=8, depth=1, heads=1, dim_head=8, mlp_dim=8))
    row = run_train_benchmark(bench)
    assert row["optimizer_steps"] == 2
    embedding = build_embedding_model("vit", (16, 16, 3), 8, **bench.backbone_kwargs)
    assert row["params"] == embedding.count_params() + 8 * 7
    with pytest.raises(ValueError, match="--branches 1"):
        run_train_benchmark(TrainBenchmark("vit", branches=2, loss="arcface", backbone_kwargs=bench.backbone_kwargs))


def test_models_and_the_train_benchmark_import_without_tensorflow():
    """The GPU machines run the JAX backend without TensorFlow installed."""
    from conftest import run_without_tensorflow

    out = run_without_tensorflow("import kerasface.models, kerasface.benchmarks.train_step, kerasface.cli.benchmark_train\n"
                                 "print('ok')\n")
    assert out.strip() == "ok"


def test_input_benchmark_reads_every_storage_beside_a_peer(image_folder, tmp_path, capsys):
    import json
    import sys

    from kerasface.cli import benchmark_input as cli
    from kerasface.benchmarks.input import bottleneck

    peer = tmp_path / "peer.py"
    peer.write_text("import json, pathlib, sys\n"
                    "n = len(list(pathlib.Path(sys.argv[1]).rglob('*.*')))\n"
                    "print(json.dumps({'peer': 'fake', 'images_per_s': 10.0, 'files': n, 'argv': sys.argv[2:]}))\n")
    argv = ["--data", str(image_folder), "--limit", "10", "--storage", "files", "tfrecord", "recordio",
            "--stages", "full training pipeline", "--seconds", "0.1", "--batch-size", "2", "--match-peer",
            "--image-size", "16", "--order", "fast", "--peer-python", sys.executable, "--peer-script", str(peer)]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [r["storage"] for r in rows] == ["files", "tfrecord", "recordio", "files"]
    assert all(r["images_per_s"] > 0 and not r.get("deterministic", False) for r in rows[:3])
    assert rows[3]["files"] == 10 and rows[3]["argv"] == ["2", "2", "16", "0"]  # same images, batch, workers, size
    assert all(abs(r["peer_ratio"] - r["images_per_s"] / 10.0) < 1e-9 for r in rows[:3])
    assert bottleneck(50.0, 100.0).startswith("the input pipeline")
    assert bottleneck(200.0, 100.0).startswith("the train step")
