import json
import runpy
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from kerasface.datasets.demo import DemoConfig, generate_demo_dataset

REPO = Path(__file__).resolve().parents[1]
from kerasface.export.run_export import export_run
from kerasface.models.preprocessing import input_preprocessing
from kerasface.report import load_run_report
from kerasface.data.readers import read_dataset
from kerasface.train.callbacks import read_run_state
from kerasface.train.config import TrainConfig, add_config_arguments, config_from_args
from kerasface.train.run import train
from kerasface.train.predict import predict_split
from kerasface.train.tasks import create_task

TINY_VIT = dict(patch_size=8, dim=16, depth=1, heads=2, mlp_dim=32, dim_head=8, dropout=0.0, emb_dropout=0.0)


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    config = DemoConfig(identities=8, images_per_identity=6, image_size=48, photometric=False, seed=0)
    return generate_demo_dataset(tmp_path_factory.mktemp("demo") / "demo", config, progress=False)


def tiny_config(demo_dir, out, **overrides):
    values = dict(backbone="vit", backbone_kwargs=TINY_VIT, data=str(demo_dir), image_size=32, batch_size=8,
                  epochs=2, out=str(out), run_id="run", tensorboard=False, learning_rate=1e-3)
    values.update(overrides)
    return TrainConfig.from_dict(values)


@pytest.fixture(scope="module")
def finished_run(demo_dir, tmp_path_factory):
    return train(tiny_config(demo_dir, tmp_path_factory.mktemp("runs")), log=lambda *_: None)


def test_run_writes_report_with_the_models_figures(finished_run, demo_dir):
    report = load_run_report(finished_run)
    model = keras.models.load_model(finished_run / "model.keras", safe_mode=True)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert report["card"]["trainable_params"] == trainable
    assert report["card"]["epochs"] == 2
    assert len(report["history"]["loss"]) == 2 and len(report["history"]["val_loss"]) == 2
    assert set(report["results"]) == {"train", "validation", "test"}
    assert 0.0 <= report["results"]["test"]["binary_accuracy"] <= 1.0
    labels = read_dataset(demo_dir, verify="none")[1].label_names
    assert set(report["label_auc"]) | set(report["skipped_labels"]) == set(labels)
    assert all(0.0 <= auc <= 1.0 for auc in report["label_auc"].values())
    for name in ("report.md", "report.json", "config.json", "history.csv", "loss.png"):
        assert (finished_run / name).is_file(), name
    state = read_run_state(finished_run / "checkpoints")
    assert state["epoch"] == 2 and state["best_epoch"] in (1, 2)
    best = keras.models.load_model(finished_run / "checkpoints" / "best.keras", safe_mode=True)
    if state["best_epoch"] == 2:
        for a, b in zip(best.weights, model.weights):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert [i.name for i in model.inputs] == ["left", "center", "right"]
    assert input_preprocessing(model).resize_mode == input_preprocessing(best).resize_mode == "pad"


class InterruptAt(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt


@pytest.mark.parametrize("module", ["train_branches", "train_recognition", "train_multitask"])
def test_each_training_command_gives_the_trainer_its_console_script_name(module, monkeypatch, tmp_path):
    import configparser
    import importlib

    from kerasface.train import run

    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg")
    scripts = dict(line.split(" = ") for line in parser["options.entry_points"]["console_scripts"].split("\n") if line)
    calls = []
    monkeypatch.setattr(run, "train", lambda *args, **kwargs: calls.append(kwargs) or tmp_path)
    assert importlib.import_module(f"kerasface.cli.{module}").main(["--resume", str(tmp_path)]) == 0
    assert len(calls) == 1 and scripts[calls[0]["command"]] == f"kerasface.cli.{module}:main"


@pytest.mark.backend
def test_resume_continues_at_the_right_epoch_with_optimizer_state(demo_dir, tmp_path):
    """An interrupted run is told to continue with the command that started it, even when another
    command resumed it."""
    config = tiny_config(demo_dir, tmp_path, epochs=3, validation_fraction=0.0)
    messages, run_dir = [], tmp_path / "run"
    told = f"interrupted; continue with: kerasface-train-recognition --resume {run_dir}"
    with pytest.raises(KeyboardInterrupt):
        train(config, log=messages.append, callbacks=[InterruptAt(2)], command="kerasface-train-recognition")
    assert messages[-1] == told
    with pytest.raises(KeyboardInterrupt):
        train(resume=run_dir, log=messages.append, callbacks=[InterruptAt(2)], command="kerasface-train-branches")
    assert messages[-1] == told
    assert read_run_state(run_dir / "checkpoints")["epoch"] == 2
    assert not (run_dir / "model.keras").exists()
    interrupted = keras.models.load_model(run_dir / "checkpoints" / "last.keras")
    steps = int(interrupted.optimizer.iterations.numpy()) // 2
    assert steps > 0

    seen = []

    class Record(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen.append(epoch)

    train(resume=run_dir, log=lambda *_: None, callbacks=[Record()])
    assert seen == [2]
    final = keras.models.load_model(run_dir / "model.keras")
    assert int(final.optimizer.iterations.numpy()) == 3 * steps
    assert input_preprocessing(final).resize_mode == "pad"
    rows = (run_dir / "history.csv").read_text().strip().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["0", "1", "2"]
    assert read_run_state(run_dir / "checkpoints")["epoch"] == 3


@pytest.mark.parametrize("views,head", [("single", "concat"), ("crops-vertical", "vote")])
def test_view_modes_and_heads_train(demo_dir, tmp_path, views, head):
    config = tiny_config(demo_dir, tmp_path, views=views, head=head, epochs=1, max_steps_per_epoch=2)
    run_dir = train(config, log=lambda *_: None)
    model = keras.models.load_model(run_dir / "model.keras")
    assert len(model.inputs) == (1 if views == "single" else 3)
    assert model.outputs[0].shape[-1] == 10
    assert np.isfinite(load_run_report(run_dir)["results"]["test"]["loss"])


def test_frozen_branch_is_unchanged_by_training(demo_dir, tmp_path):
    config = tiny_config(demo_dir, tmp_path, epochs=1, freeze_branches=[1], validation_fraction=0.0,
                         init_branches=None)
    run_dir = train(config, log=lambda *_: None)
    model = keras.models.load_model(run_dir / "model.keras")
    fresh = keras.models.load_model(run_dir / "model.keras")
    assert not model.get_layer("branch_1").trainable and model.get_layer("branch_0").trainable
    # the frozen branch equals the initial weights the run was built with (same seed)
    keras.utils.set_random_seed(config.seed)
    initial = create_task(config, read_dataset(demo_dir, verify="none")[1]).build_model()
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


def test_config_sections_file_and_flags(tmp_path):
    import argparse

    path = tmp_path / "run.yaml"
    path.write_text("model:\n  backbone: resnet50\noptim:\n  epochs: 7\nlearning-rate: 0.001\n")
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    config = config_from_args(parser.parse_args(["--config", str(path), "--epochs", "2", "--data", "x.csv"]))
    assert (config.model.backbone, config.optim.epochs, config.optim.learning_rate) == ("resnet50", 2, 0.001)
    assert config.data.path == "x.csv"
    assert TrainConfig.from_dict(config.to_dict()) == config
    demo = {"image_size": 32, "epochs": 3, "demo_identities": 100}
    path.write_text("data:\n  image_size: 64\n")
    config = config_from_args(parser.parse_args(["--config", str(path)]), demo_defaults=demo)
    assert (config.data.image_size, config.optim.epochs, config.data.demo_identities) == (64, 3, 100)
    config = config_from_args(parser.parse_args(["--data", "x.csv"]), demo_defaults=demo)
    assert (config.data.image_size, config.optim.epochs) == (48, 6)
    path.write_text("backbone: resnet50\nepoch: 7\n")
    with pytest.raises(ValueError, match="unknown setting.*epoch"):
        config_from_args(parser.parse_args(["--config", str(path)]))
    with pytest.raises(ValueError, match="unknown setting.*model.epochs"):
        TrainConfig.from_dict({"model": {"epochs": 3}})
    with pytest.raises(ValueError, match="views"):
        TrainConfig.from_dict({"views": "diagonal"})
    with pytest.raises(ValueError, match="metric-learning"):
        train(TrainConfig.from_dict({"head": "embedding", "out": str(tmp_path / "runs")}))
    assert not (tmp_path / "runs").exists()


def test_adamw_weight_decay_zero_stays_zero():
    from kerasface.train.config import OptimConfig
    from kerasface.train.optimizers import make_optimizer

    assert make_optimizer(OptimConfig(optimizer="adamw", weight_decay=0.0), 10).weight_decay == 0.0
    assert make_optimizer(OptimConfig(optimizer="adamw", weight_decay=0.05), 10).weight_decay == 0.05
    assert make_optimizer(OptimConfig(optimizer="adamw"), 10).weight_decay == 1e-4
    assert make_optimizer(OptimConfig(optimizer="sgd", weight_decay=0.0), 10).weight_decay is None


def test_dry_run_prints_paper_preset_parameter_counts_from_any_folder(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KERASFACE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(sys, "argv", ["train_branches.py", "--dry-run", "--backbone", "densenet121",
                                      "--preset", "paper", "--image-size", "32", "--demo-identities", "4",
                                      "--demo-images-per-identity", "2"])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(REPO / "pipelines" / "train_branches.py"), run_name="__main__")
    assert exit_.value.code == 0
    line = [l for l in capsys.readouterr().out.splitlines() if l.startswith("{")][-1]
    counts = json.loads(line)
    assert counts["trainable_params"] == 24_707_394 and counts["non_trainable_params"] == 250_944


def test_dry_run_takes_the_outputs_from_the_dataset(image_folder):
    from kerasface.train.run import dry_run

    config = TrainConfig.from_dict(dict(task="identity", data=str(image_folder), backbone="vit",
                                        backbone_kwargs=TINY_VIT, image_size=16, views="single"))
    row = dry_run(config)
    assert row["task"] == "identity" and row["layout"].endswith("Dense 3 softmax")


class RecordLearningRate(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.rates = {}

    def on_epoch_begin(self, epoch, logs=None):
        self.rates[epoch] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


def test_resume_with_more_epochs_rebuilds_the_cosine_schedule(demo_dir, tmp_path):
    config = tiny_config(demo_dir, tmp_path, epochs=2, lr_schedule="cosine", validation_fraction=0.0)
    run_dir = train(config, log=lambda *_: None)
    record = RecordLearningRate()
    train(resume=run_dir, epochs=4, log=lambda *_: None, callbacks=[record])
    base = config.optim.learning_rate
    # after 2 of 4 epochs the cosine schedule is half way: lr = base * (1 + cos(pi / 2)) / 2
    assert record.rates[2] == pytest.approx(base * 0.5, rel=1e-5)
    assert record.rates[3] == pytest.approx(base * (1 + np.cos(np.pi * 3 / 4)) / 2, rel=1e-5)
    report = load_run_report(run_dir)
    assert "rebuilt at resume for 4 epochs" in report["card"]["notes"]
    assert report["card"]["epochs"] == 4


class WorseFromEpoch(keras.callbacks.Callback):
    """Make the monitored metric worse from ``epoch`` on and keep the weights of each epoch."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch
        self.weights = {}

    def on_epoch_end(self, epoch, logs=None):
        self.weights[epoch + 1] = [np.array(w) for w in self.model.get_weights()]
        logs["custom_metric"] = float(epoch)
        if epoch >= self.epoch:
            logs["val_loss"] = 1e9


def test_model_and_test_metrics_come_from_the_best_checkpoint(demo_dir, tmp_path):
    from kerasface.train.data import load_run_data, make_pipelines

    config = tiny_config(demo_dir, tmp_path, epochs=2)
    recorder = WorseFromEpoch(1)
    run_dir = train(config, log=lambda *_: None, callbacks=[recorder])
    report = load_run_report(run_dir)
    assert report["card"]["best_epoch"] == 1 and report["card"]["epochs"] == 2
    model = keras.models.load_model(run_dir / "model.keras")
    for saved, best in zip(model.get_weights(), recorder.weights[1]):
        np.testing.assert_array_equal(saved, best)
    assert any(not np.array_equal(a, b) for a, b in zip(recorder.weights[1], recorder.weights[2]))
    history = report["history"]
    assert history["custom_metric"] == [0.0, 1.0]  # a user callback's metric reaches the CSV log
    assert report["results"]["train"]["loss"] == pytest.approx(history["loss"][0])
    data = load_run_data(config, progress=False)
    task = create_task(config, data.spec)
    pipelines, _ = make_pipelines(config, data, task, config.optim.batch_size)
    expected, _ = task.evaluate(model, pipelines["test"])
    assert report["results"]["test"]["loss"] == pytest.approx(expected["loss"], rel=1e-5)


class PoisonWeights(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        if self.params and self._epoch == 1 and batch == 0:
            weight = self.model.trainable_weights[0]
            weight.assign(np.full(weight.shape, np.nan, np.float32))

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch


def test_a_diverged_epoch_is_not_saved(demo_dir, tmp_path):
    config = tiny_config(demo_dir, tmp_path, epochs=3, validation_fraction=0.0)
    run_dir = train(config, log=lambda *_: None, callbacks=[PoisonWeights()])
    state = read_run_state(run_dir / "checkpoints")
    assert state["epoch"] == 1 and "epoch 2 diverged" in state["stopped"]
    for name in ("checkpoints/last.keras", "model.keras"):
        model = keras.models.load_model(run_dir / name)
        assert all(np.isfinite(w).all() for w in model.get_weights()), name
    report = load_run_report(run_dir)
    assert "diverged" in report["card"]["notes"] and np.isfinite(report["results"]["test"]["loss"])


def test_identity_classification_refuses_an_identity_split(image_folder, tmp_path):
    config = TrainConfig.from_dict(dict(task="identity", split="identity", data=str(image_folder),
                                        out=str(tmp_path / "runs")))
    with pytest.raises(ValueError, match="0 accuracy on the test split by construction"):
        train(config, log=lambda *_: None)
    assert not (tmp_path / "runs").exists()


def test_attributes_task_on_an_image_folder_names_the_fix(image_folder, tmp_path):
    config = TrainConfig.from_dict(dict(data=str(image_folder), out=str(tmp_path / "runs")))
    with pytest.raises(ValueError, match="--task identity"):
        train(config, log=lambda *_: None)


class CountBatches(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.steps = 0

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1


def test_identity_task_with_pk_batches(demo_dir, tmp_path):
    from kerasface.data.identity_batches import pk_num_batches
    from kerasface.train.data import load_run_data, make_pipelines

    config = tiny_config(demo_dir, tmp_path, task="identity", sampler="pk", pk_identities=3, pk_images=2,
                         views="single", epochs=1, validation_fraction=0.0)
    data = load_run_data(config, progress=False)
    task = create_task(config, data.spec)
    pipelines, steps = make_pipelines(config, data, task, config.optim.batch_size)
    assert steps == pk_num_batches(data.splits["train"].identity, 3, 2)
    for _, identity in pipelines["train"].take(3):
        ids, counts = np.unique(np.asarray(identity), return_counts=True)
        assert len(ids) == 3 and (counts == 2).all()
    counter = CountBatches()
    run_dir = train(config, log=lambda *_: None, callbacks=[counter])
    report = load_run_report(run_dir)
    assert counter.steps == steps and report["card"]["task"] == "identity"
    assert 0.0 <= report["results"]["test"]["accuracy"] <= 1.0


@keras.saving.register_keras_serializable(package="kerasface_tests")
class CountCalls(keras.layers.Layer):
    """Identity layer that counts how often Python runs its ``call`` while training."""

    calls = 0

    def call(self, x, training=None):
        if training:
            type(self).calls += 1
        return x


@pytest.mark.backend
def test_the_train_step_is_compiled_not_run_op_by_op(demo_dir, tmp_path):
    """4 training steps run the model's Python code once or twice (tracing), not 4 times:
    on JAX that needs jax.jit (jit_compile), on TensorFlow tf.function."""
    from kerasface.registry import TASKS
    from kerasface.train.tasks import AttributesTask

    @TASKS.register("attributes-with-call-counter")
    class Counted(AttributesTask):
        def build_model(self):
            inner = super().build_model()
            inputs = [keras.Input(t.shape[1:], name=t.name) for t in inner.inputs]
            counted = [CountCalls()(x) for x in inputs]
            return keras.Model(inputs, inner(counted))

    CountCalls.calls = 0
    config = tiny_config(demo_dir, tmp_path, task="attributes-with-call-counter", epochs=1,
                         max_steps_per_epoch=4, batch_size=4, validation_fraction=0.0)
    run_dir = train(config, log=lambda *_: None)
    card = load_run_report(run_dir)["card"]
    if keras.backend.backend() == "jax":
        assert card["jit_compile"] is True
    assert 1 <= CountCalls.calls / 3 <= 2


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


def test_a_monitor_that_no_callback_logs_stops_the_first_epoch(tmp_path):
    """Without it a run keeps no best checkpoint and reports its last epoch under the monitor's name."""
    from kerasface.train.callbacks import RunCheckpoint

    checkpoint = RunCheckpoint(tmp_path / "checkpoints", monitor="val_validation_auc_cosine", mode="max")
    with pytest.raises(ValueError, match=r"epoch 1 logged no 'val_validation_auc_cosine'.*\['accuracy', 'loss'\]"):
        checkpoint.on_epoch_end(0, {"loss": 1.0, "accuracy": 0.5})
    assert not (tmp_path / "checkpoints").exists()


def test_modalities_view_trains_and_exports_from_photometric_tiles(tmp_path):
    from kerasface.modalities.photometric import build_modality_dataset

    config = DemoConfig(identities=4, images_per_identity=3, image_size=32, seed=4)
    demo = generate_demo_dataset(tmp_path / "demo", config, progress=False)
    build_modality_dataset(demo, tmp_path / "tiles", progress=False)
    run_dir = train(tiny_config(tmp_path / "tiles", tmp_path / "runs", views="modalities", epochs=1,
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


def test_paper_undersampling_of_the_training_split_is_reported(demo_dir, tmp_path):
    from kerasface.train.data import load_run_data

    plain = load_run_data(tiny_config(demo_dir, tmp_path), progress=False)
    data = load_run_data(tiny_config(demo_dir, tmp_path, undersample="paper"), progress=False)
    assert len(data.splits["train"]) < len(plain.splits["train"])
    assert len(data.splits["test"]) == len(plain.splits["test"])
    table = next(note for note in data.notes if note.startswith("undersampled"))
    assert f"{len(plain.splits['train'])} -> {len(data.splits['train'])} samples" in table
    warned = any(note.startswith("warning: undersampling kept") for note in data.notes)
    assert warned == (len(data.splits["train"]) < len(plain.splits["train"]) / 4)



def test_deprecated_seed_values_map_to_paper():
    with pytest.warns(DeprecationWarning, match="'paper'"):
        config = TrainConfig.from_dict({"undersample": "seed", "preset": "seed"})
    assert config.data.undersample == "paper" and config.model.preset == "paper"
    import argparse

    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    with pytest.warns(DeprecationWarning):
        flags = config_from_args(parser.parse_args(["--undersample", "seed", "--preset", "seed"]))
    assert flags.data.undersample == "paper" and flags.model.preset == "paper"


DETERMINISM = r"""
import sys
from pathlib import Path
from kerasface.train.config import TrainConfig
from kerasface.train.run import train

demo, out = sys.argv[1], Path(sys.argv[2])
for run_id in ("a", "b"):
    train(TrainConfig.from_dict(dict(
        backbone="vit", data=demo, image_size=32, batch_size=8, epochs=2, out=str(out), run_id=run_id,
        tensorboard=False, learning_rate=1e-3, deterministic=True,
        backbone_kwargs=dict(patch_size=8, dim=16, depth=1, heads=2, mlp_dim=32, dim_head=8))), log=lambda *_: None)
"""


def test_deterministic_runs_give_identical_figures(demo_dir, tmp_path):
    """In a process of its own: op determinism is a process-wide switch of TensorFlow."""
    import os
    import subprocess

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", DETERMINISM, str(demo_dir), str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = (load_run_report(tmp_path / run_id) for run_id in ("a", "b"))
    assert a["history"] == b["history"] and a["results"] == b["results"]
    assert load_run_report(tmp_path / "a")["card"]["deterministic"] is True
    for x, y in zip(keras.models.load_model(tmp_path / "a" / "model.keras").get_weights(),
                    keras.models.load_model(tmp_path / "b" / "model.keras").get_weights()):
        np.testing.assert_array_equal(x, y)


@keras.saving.register_keras_serializable(package="kerasface_tests")
class HalfLabels(keras.layers.Layer):
    def call(self, scores, labels):
        return 0.5 * scores + 0.5 * labels


def test_a_task_can_feed_the_labels_to_its_model(demo_dir, tmp_path):
    """model_io gives the model ((views, labels), labels), as margin heads need: a model whose
    output is 0.5 * sigmoid + 0.5 * label scores every test label right."""
    from kerasface.registry import TASKS
    from kerasface.train.tasks import AttributesTask

    @TASKS.register("attributes-with-labels-in")
    class LabelsIn(AttributesTask):
        def model_io(self, x, y):
            return (x, y), y

        def build_model(self):
            inner = super().build_model()
            views = [keras.Input(t.shape[1:], name=t.name) for t in inner.inputs]
            labels = keras.Input((self.num_outputs,), name="labels")
            return keras.Model([*views, labels], HalfLabels()(inner(views), labels))

    config = tiny_config(demo_dir, tmp_path, task="attributes-with-labels-in", epochs=1, validation_fraction=0.0)
    report = load_run_report(train(config, log=lambda *_: None))
    assert report["results"]["test"]["binary_accuracy"] == 1.0


def test_recognition_trains_an_embedding_and_verifies_unseen_identities(tmp_path):
    from kerasface.cli.train_recognition import main

    demo = generate_demo_dataset(tmp_path / "demo", DemoConfig(identities=16, images_per_identity=4, image_size=32,
                                                              photometric=False), progress=False)
    argv = ["--data", str(demo / "images"), "--out", str(tmp_path / "runs"), "--run-id", "r", "--epochs", "1",
            "--backbone", "vit", "--backbone-kwargs", json.dumps({**TINY_VIT, "dim": 16}), "--embedding-dim", "16",
            "--image-size", "32", "--no-tensorboard", "--batch-size", "8", "--validation-fraction", "0.2",
            "--resize-mode", "crop"]
    people = sorted(p.name for p in (demo / "images").iterdir() if p.is_dir())
    (tmp_path / "people.txt").write_text("\n".join(people[:6]) + "\n")
    (tmp_path / "pairs.txt").write_text(f"1\n{people[6]}\t1\t2\n{people[7]}\t1\t{people[8]}\t2\n")
    files = [str(tmp_path / "people.txt"), str(tmp_path / "pairs.txt")]
    assert main(argv + ["--exclude-identities", *files]) == 0
    run_dir = tmp_path / "runs" / "r"
    report = load_run_report(run_dir)
    # exactly the named people left training, the other splits untouched, and the report says how many
    from kerasface.train.config import load_run_config
    from kerasface.train.data import load_run_data

    run_config = load_run_config(run_dir)
    assert run_config.data.exclude_identities == files
    before, after = (load_run_data(c, progress=False) for c in (run_config.replace(exclude_identities=[]), run_config))
    names = lambda samples: [before.spec.class_names[i] for i in samples.identity]  # noqa: E731
    trained_before = set(names(before.splits["train"]))
    assert set(names(after.splits["train"])) == trained_before - set(people[:9])
    for split in ("validation", "test"):
        assert list(after.splits[split].paths) == list(before.splits[split].paths)
    removed = [n for n in names(before.splits["train"]) if n in people[:9]]
    assert removed
    assert report["card"]["removed_from_training"] == (f"named in {', '.join(files)}: {len(set(removed))} identities, "
                                                       f"{len(removed)} images")
    test = report["results"]["test"]
    assert {"accuracy", "auc_cosine", "auc_euclidean"} <= set(test) and 0 <= test["auc_cosine"] <= 1
    assert report["card"]["monitor"] == "val_validation_auc_cosine"
    assert "val_test_auc_cosine" in report["history"] and "val_loss" not in report["history"]
    embedding = keras.models.load_model(run_dir / "model.keras", safe_mode=True)
    assert len(embedding.inputs) == 1 and embedding.outputs[0].shape[-1] == 16
    assert input_preprocessing(embedding).resize_mode == "crop"
    config = json.loads((run_dir / "config.json").read_text())
    assert (config["task"], config["data"]["split"], config["recognition"]["loss"]) == ("recognition", "identity", "arcface")
    if keras.backend.backend() == "tensorflow":  # a fresh process that imported nothing of the kit's models
        import subprocess

        done = subprocess.run([sys.executable, str(REPO / "pipelines" / "export.py"), "--run", str(run_dir),
                               "--out", str(tmp_path / "export")], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "served outputs equal the Keras model's" in done.stdout


def colour_pack(folder, identities=12, per_identity=4, size=32, seed=0):
    """A RecordIO pack (insightface's train.rec + train.idx) of faces that are one colour per
    identity plus noise, so that even an untrained embedding tells the identities apart."""
    import cv2

    from kerasface.data.recordio import write_recordio

    rng = np.random.default_rng(seed)
    records = []
    for identity in range(identities):
        colour = rng.integers(30, 226, 3)
        for _ in range(per_identity):
            image = np.clip(colour + rng.integers(-20, 21, (size, size, 3)), 0, 255).astype(np.uint8)
            records.append((cv2.imencode(".png", image)[1].tobytes(), identity))
    return write_recordio(folder, records)


class ZeroWeightsIn(keras.callbacks.Callback):
    """Sets every weight to zero after each batch of one epoch: its embeddings are all equal."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch
        self.current = None

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.current == self.epoch:
            for weight in self.model.weights:
                weight.assign(np.zeros(weight.shape, weight.dtype))


def test_a_recordio_recognition_run_keeps_the_best_validation_epoch(tmp_path):
    """The path of CASIA-WebFace, MS1M and Glint360K packs: each epoch verifies the validation and
    test identities from their own pipelines, the best validation epoch is the best checkpoint, and
    results.test are its figures, not the last epoch's (made worse on purpose)."""
    pack = colour_pack(tmp_path / "pack")
    config = TrainConfig.from_dict(dict(
        task="recognition", data=str(pack), split="identity", views="single", test_fraction=0.25,
        validation_fraction=0.25, backbone="vit", backbone_kwargs=TINY_VIT, embedding_dim=16, image_size=32,
        batch_size=8, epochs=3, loss="normface", loss_kwargs={"scale": 16.0}, augment=False, out=str(tmp_path),
        run_id="rec", tensorboard=False))
    report = load_run_report(train(config, log=lambda *_: None, callbacks=[ZeroWeightsIn(2)]))
    history, card = report["history"], report["card"]
    validation = history["val_validation_auc_cosine"]
    assert len(validation) == 3 and len(history["val_test_auc_cosine"]) == 3
    assert validation[2] == 0.5 and max(validation[:2]) > 0.5  # equal embeddings score chance
    best = int(np.argmax(validation)) + 1
    assert card["monitor"] == "val_validation_auc_cosine" and card["best_epoch"] == best
    assert read_run_state(tmp_path / "rec" / "checkpoints")["best_epoch"] == best
    test = report["results"]["test"]
    assert test["auc_cosine"] == pytest.approx(history["val_test_auc_cosine"][best - 1], abs=1e-6)
    assert test["accuracy"] == pytest.approx(history["val_test_accuracy"][best - 1], abs=1e-6)
    assert history["val_test_auc_cosine"][2] == 0.5 != test["auc_cosine"]


def test_recognition_demo_settings_follow_the_chosen_loss():
    """Without --data the demo's head options depend on --loss; flags and --data win over them."""
    from kerasface.cli.train_recognition import DEFAULTS, demo_defaults
    from kerasface.cli.training import training_parser

    parser = training_parser(None, ["recognition"])

    def config(*argv):
        return config_from_args(parser.parse_args(list(argv)), DEFAULTS, demo_defaults)

    demo = config()
    assert (demo.task_config.loss, demo.task_config.loss_kwargs, demo.data.image_size) == \
        ("arcface", {"scale": 16.0, "margin": 0.3}, 40)
    assert config("--loss", "cosface").task_config.loss_kwargs == {"scale": 16.0}
    assert config("--loss", "ohem+normface").task_config.loss_kwargs == {"scale": 16.0}
    assert config("--loss", "triplet").task_config.loss_kwargs == {}
    assert config("--loss-kwargs", '{"scale": 30}').task_config.loss_kwargs == {"scale": 30}
    assert config("--image-size", "56").data.image_size == 56
    own = config("--data", "faces/")
    assert (own.task_config.loss_kwargs, own.data.image_size, own.optim.epochs) == ({}, 112, 20)
    assert demo.optim.epochs == 5 and not demo.data.augment and own.data.augment


def test_attribute_results_carry_the_column_aucs(finished_run):
    test = load_run_report(finished_run)["results"]["test"]
    for column in ("gender", "emotion", "pose", "facial_hair", "occlusion", "spectacles"):
        assert 0.0 <= test[f"auc_{column}"] <= 1.0
    assert test["mean_column_auc"] == pytest.approx(np.mean([test[k] for k in test if k.startswith("auc_")]))


def test_loss_comparison_names_the_demo_data_without_a_machine_path(tmp_path, monkeypatch):
    import kerasface.train.compare as compare

    monkeypatch.setenv("KERASFACE_CACHE", str(tmp_path / "cache"))
    fake = {"results": {"test": {"accuracy": 0.9, "auc_cosine": 0.95}}, "card": {"best_epoch": 1}}
    monkeypatch.setattr(compare, "train", lambda config, log: Path(config.out) / config.run_id)
    monkeypatch.setattr(compare, "load_run_report", lambda run_dir: fake)
    out = compare.compare_losses(TrainConfig.from_dict({"task": "recognition"}), ["arcface"], out=tmp_path / "t",
                                 log=lambda *_: None)
    text = (out / "table.md").read_text()
    dataset = json.loads((out / "table.json").read_text())["card"]["dataset"]
    assert text.startswith("# Loss comparison\n") and f"dataset: {dataset}," in text
    assert dataset.startswith("demo dataset demo-") and "40 identities x 20 images" in dataset
    assert str(tmp_path) not in text and "/" not in dataset and not (tmp_path / "cache").exists()
    assert compare.SEED_004_LOSSES == compare.COMPARED_LOSSES  # deprecated name


def test_compare_losses_writes_the_loss_comparison_table(tmp_path, capsys):
    from kerasface.cli.compare_losses import main

    demo = generate_demo_dataset(tmp_path / "demo", DemoConfig(identities=16, images_per_identity=4, image_size=32,
                                                              photometric=False), progress=False)
    out = tmp_path / "compare"
    argv = ["--data", str(demo / "images"), "--losses", "arcface", "ohem+normface", "triplet", "--resume-table",
            str(out), "--epochs", "1", "--backbone", "vit", "--backbone-kwargs", json.dumps(TINY_VIT),
            "--embedding-dim", "16", "--image-size", "32", "--no-tensorboard", "--batch-size", "8",
            "--pk-identities", "4", "--pk-images", "2", "--validation-fraction", "0.2"]
    assert main(argv) == 0
    table = json.loads((out / "table.json").read_text())
    assert [row["loss"] for row in table["rows"]] == ["arcface", "ohem+normface", "triplet"]
    for row in table["rows"]:
        assert "error" not in row and 0.0 <= row["auc_cosine"] <= 1.0 and 0.0 <= row["accuracy"] <= 1.0
    assert "| ohem+normface |" in (out / "table.md").read_text()
    assert load_run_report(out / "triplet")["card"]["layout"].endswith("triplet loss")
