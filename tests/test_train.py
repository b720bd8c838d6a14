import json
import runpy
import sys

import keras
import numpy as np
import pytest

from kerasface.datasets.demo import DemoConfig, generate_demo_dataset
from kerasface.export.run_export import export_run
from kerasface.report import load_run_report
from kerasface.data.readers import read_dataset
from kerasface.train.branch_trainer import build_model, predict_split, train_branches
from kerasface.train.callbacks import read_run_state
from kerasface.train.config import TrainConfig, add_config_arguments, config_from_args
from kerasface.train.tasks import task_for

TINY_VIT = dict(patch_size=8, dim=16, depth=1, heads=2, mlp_dim=32, dim_head=8, dropout=0.0, emb_dropout=0.0)


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    config = DemoConfig(identities=8, images_per_identity=6, image_size=48, photometric=False, seed=0)
    return generate_demo_dataset(tmp_path_factory.mktemp("demo") / "demo", config, progress=False)


def tiny_config(demo_dir, out, **overrides):
    values = dict(backbone="vit", backbone_kwargs=TINY_VIT, data=str(demo_dir), image_size=32, batch_size=8,
                  epochs=2, out=str(out), run_id="run", tensorboard=False, learning_rate=1e-3)
    values.update(overrides)
    return TrainConfig(**values)


@pytest.fixture(scope="module")
def finished_run(demo_dir, tmp_path_factory):
    return train_branches(tiny_config(demo_dir, tmp_path_factory.mktemp("runs")), log=lambda *_: None)


def test_run_writes_report_with_the_models_figures(finished_run):
    report = load_run_report(finished_run)
    model = keras.models.load_model(finished_run / "model.keras", safe_mode=True)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert report["card"]["trainable_params"] == trainable
    assert report["card"]["epochs"] == 2
    assert len(report["history"]["loss"]) == 2 and len(report["history"]["val_loss"]) == 2
    assert set(report["results"]) == {"train", "validation", "test"}
    assert 0.0 <= report["results"]["test"]["binary_accuracy"] <= 1.0
    assert sorted(report["roc"]) if "roc" in report else True
    for name in ("report.md", "report.json", "config.json", "history.csv", "loss.png"):
        assert (finished_run / name).is_file(), name
    state = read_run_state(finished_run / "checkpoints")
    assert state["epoch"] == 2 and state["best_epoch"] in (1, 2)
    best = keras.models.load_model(finished_run / "checkpoints" / "best.keras", safe_mode=True)
    if state["best_epoch"] == 2:
        for a, b in zip(best.weights, model.weights):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert [i.name for i in model.inputs] == ["left", "center", "right"]


class InterruptAt(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt


@pytest.mark.backend
def test_resume_continues_at_the_right_epoch_with_optimizer_state(demo_dir, tmp_path):
    config = tiny_config(demo_dir, tmp_path, epochs=3, validation_fraction=0.0)
    with pytest.raises(KeyboardInterrupt):
        train_branches(config, log=lambda *_: None, callbacks=[InterruptAt(2)])
    run_dir = tmp_path / "run"
    assert read_run_state(run_dir / "checkpoints")["epoch"] == 2
    assert not (run_dir / "model.keras").exists()
    interrupted = keras.models.load_model(run_dir / "checkpoints" / "last.keras")
    steps = int(interrupted.optimizer.iterations.numpy()) // 2
    assert steps > 0

    seen = []

    class Record(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen.append(epoch)

    train_branches(None, resume=run_dir, log=lambda *_: None, callbacks=[Record()])
    assert seen == [2]
    final = keras.models.load_model(run_dir / "model.keras")
    assert int(final.optimizer.iterations.numpy()) == 3 * steps
    rows = (run_dir / "history.csv").read_text().strip().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["0", "1", "2"]
    assert read_run_state(run_dir / "checkpoints")["epoch"] == 3


@pytest.mark.parametrize("views,head", [("single", "concat"), ("crops-vertical", "vote")])
def test_view_modes_and_heads_train(demo_dir, tmp_path, views, head):
    config = tiny_config(demo_dir, tmp_path, views=views, head=head, epochs=1, max_steps_per_epoch=2)
    run_dir = train_branches(config, log=lambda *_: None)
    model = keras.models.load_model(run_dir / "model.keras")
    assert len(model.inputs) == (1 if views == "single" else 3)
    assert model.outputs[0].shape[-1] == 10
    assert np.isfinite(load_run_report(run_dir)["results"]["test"]["loss"])


def test_frozen_branch_is_unchanged_by_training(demo_dir, tmp_path):
    config = tiny_config(demo_dir, tmp_path, epochs=1, freeze_branches=[1], validation_fraction=0.0,
                         init_branches=None)
    run_dir = train_branches(config, log=lambda *_: None)
    model = keras.models.load_model(run_dir / "model.keras")
    fresh = keras.models.load_model(run_dir / "model.keras")
    assert not model.get_layer("branch_1").trainable and model.get_layer("branch_0").trainable
    # the frozen branch equals the initial weights the run was built with (same seed)
    keras.utils.set_random_seed(config.seed)
    task = task_for(read_dataset(demo_dir, verify="none")[1])
    initial = build_model(config, task)
    for before, after in zip(initial.get_layer("branch_1").weights, fresh.get_layer("branch_1").weights):
        np.testing.assert_array_equal(np.asarray(before), np.asarray(after))
    changed = [not np.array_equal(np.asarray(b), np.asarray(a)) for b, a in
               zip(initial.get_layer("branch_0").trainable_weights, fresh.get_layer("branch_0").trainable_weights)]
    assert all(changed)


def test_export_matches_keras_model_in_fresh_process(finished_run, tmp_path):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("export needs the TensorFlow backend")
    differences = export_run(finished_run, tmp_path / "export", check_images=4)
    assert set(differences) == {"images", "bytes", "views"}
    assert max(differences.values()) < 1e-4
    assert (tmp_path / "export" / "saved_model.pb").is_file()


def test_config_file_and_flags(tmp_path):
    import argparse

    path = tmp_path / "run.yaml"
    path.write_text("backbone: resnet50\nepochs: 7\nlearning-rate: 0.001\n")
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    config = config_from_args(parser.parse_args(["--config", str(path), "--epochs", "2"]))
    assert (config.backbone, config.epochs, config.learning_rate) == ("resnet50", 2, 0.001)
    path.write_text("backbone: resnet50\nepoch: 7\n")
    with pytest.raises(ValueError, match="unknown setting"):
        config_from_args(parser.parse_args(["--config", str(path)]))
    with pytest.raises(ValueError, match="views"):
        TrainConfig(views="diagonal")
    with pytest.raises(ValueError, match="metric-learning"):
        train_branches(TrainConfig(head="embedding", out=str(tmp_path / "runs")))
    assert not (tmp_path / "runs").exists()


def test_dry_run_prints_seed_parameter_counts(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["train_branches.py", "--dry-run", "--backbone", "densenet121",
                                      "--preset", "seed", "--image-size", "32"])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path("pipelines/train_branches.py", run_name="__main__")
    assert exit_.value.code == 0
    line = [l for l in capsys.readouterr().out.splitlines() if l.startswith("{")][-1]
    counts = json.loads(line)
    assert counts["trainable_params"] == 24_707_394 and counts["non_trainable_params"] == 250_944


def test_best_checkpoint_keeps_its_content_when_last_is_replaced(tmp_path):
    from kerasface.train.callbacks import link_or_copy_atomic

    last, best = tmp_path / "last.keras", tmp_path / "best.keras"
    last.write_bytes(b"epoch 1")
    link_or_copy_atomic(last, best)
    tmp = tmp_path / ".last.tmp"
    tmp.write_bytes(b"epoch 2")
    tmp.replace(last)
    assert best.read_bytes() == b"epoch 1" and last.read_bytes() == b"epoch 2"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_modalities_view_trains_and_exports_from_photometric_tiles(tmp_path):
    from kerasface.modalities.photometric import build_modality_dataset

    config = DemoConfig(identities=4, images_per_identity=3, image_size=32, seed=4)
    demo = generate_demo_dataset(tmp_path / "demo", config, progress=False)
    build_modality_dataset(demo, tmp_path / "tiles", progress=False)
    run_dir = train_branches(tiny_config(tmp_path / "tiles", tmp_path / "runs", views="modalities", epochs=1,
                                         validation_fraction=0.0, image_size=16,
                                         backbone_kwargs={**TINY_VIT, "patch_size": 4}), log=lambda *_: None)
    model = keras.models.load_model(run_dir / "model.keras")
    assert [i.name for i in model.inputs] == ["albedo", "normal", "depth"]
    if keras.backend.backend() == "tensorflow":
        differences = export_run(run_dir, tmp_path / "export", check_images=3)
        assert max(differences.values()) < 1e-4


def test_predict_split_pads_the_short_last_batch_and_keeps_every_score():
    import tensorflow as tf

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="sigmoid")])
    x = np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)
    y = np.arange(10)
    y_true, y_score = predict_split(model, tf.data.Dataset.from_tensor_slices((x, y)).batch(4))
    np.testing.assert_array_equal(y_true, y)
    np.testing.assert_allclose(y_score, np.asarray(model(x)), atol=1e-6)


def test_seed_undersampling_of_the_training_split_is_reported(demo_dir, tmp_path):
    from kerasface.train.branch_trainer import load_run_data

    plain = load_run_data(tiny_config(demo_dir, tmp_path), progress=False)
    data = load_run_data(tiny_config(demo_dir, tmp_path, undersample="seed"), progress=False)
    assert len(data.splits["train"]) < len(plain.splits["train"])
    assert len(data.splits["test"]) == len(plain.splits["test"])
    table = next(note for note in data.notes if note.startswith("undersampled"))
    assert f"{len(plain.splits['train'])} -> {len(data.splits['train'])} samples" in table
    warned = any(note.startswith("warning: undersampling kept") for note in data.notes)
    assert warned == (len(data.splits["train"]) < len(plain.splits["train"]) / 4)
