"""Each task owns its settings: a section of the run's config named as the task
(``Task.config_cls``) and their flags (``Task.add_arguments``). A run's config.json holds only
what applies to it, each command offers only its tasks' flags, and older runs' config files
still load (and resume)."""

import dataclasses
import importlib
import json
import re
import warnings

import pytest

from kerasface.cli.training import training_command
from kerasface.registry import TASKS
from kerasface.report import load_run_report
from kerasface.train.config import TrainConfig, load_run_config
from kerasface.train.multitask import MultitaskConfig
from kerasface.train.recognition import RecognitionConfig
from kerasface.train.run import train
from kerasface.train.tasks import AttributesTask
from test_train import TINY_VIT, InterruptAt, demo_dir, tiny_config  # noqa: F401  (demo_dir: a fixture)

SECTIONS = ["task", "seed", "out", "run_id", "data", "model", "optim", "runtime"]
RECOGNITION_ONLY = {"paper_settings", "init", "freeze_backbone_epochs", "modalities", "val_pairs", "monitor"}
MULTITASK_ONLY = {"attributes", "head_units", "adversarial", "reversal_lambda", "reversal_warmup", "adversary_speed",
                  "loss_weights"}
TASK_SETTINGS = {f.name for cls in (RecognitionConfig, MultitaskConfig) for f in dataclasses.fields(cls)}
# what an older version wrote into the "model" section of every run, whatever its task
OLD_TASK_SETTINGS = {
    "modalities": [], "init": None, "freeze_backbone_epochs": 0, "loss": "arcface", "loss_kwargs": {},
    "paper_settings": False, "embedding_dim": 512, "attributes": [], "head_units": 128, "adversarial": True,
    "reversal_lambda": 1.0, "reversal_warmup": 0.0, "adversary_speed": 1.0, "loss_weights": {},
}
# an older version's config.json of a train_recognition demo run, as it wrote it
OLD_RECOGNITION_RUN = json.loads("""
{"task": "recognition", "seed": 0, "out": "reports", "run_id": null, "data": {"path": null, "skip_bad": false,
 "verify": "auto", "missing_labels": false, "undersample": null, "exclude_identities": [],
 "min_images_per_identity": 1, "val_pairs": ["/sets/lfw/pairs.txt"], "split": "identity", "test_fraction": 0.3,
 "validation_fraction": 0.1, "image_size": 40, "views": "single", "crop_fraction": 0.875, "resize_mode": "pad",
 "augment": false, "flip": "auto", "max_rotation": 10.0, "noise_sigma": 0.05, "cache": "auto",
 "input_order": "deterministic", "sampler": "shuffle", "pk_identities": 8, "pk_images": 4, "demo_identities": 100,
 "demo_images_per_identity": 20},
 "model": {"backbone": "iresnet18", "backbone_kwargs": {}, "preset": null, "head": "concat", "vote": "mean",
 "shared_weights": false, "freeze_branches": [], "init_branches": null, "modalities": [], "init": null,
 "freeze_backbone_epochs": 0, "bn_momentum": 0.9, "loss": "cosface", "loss_kwargs": {"scale": 16.0},
 "paper_settings": false, "embedding_dim": 64, "attributes": [], "head_units": 128, "adversarial": true,
 "reversal_lambda": 1.0, "reversal_warmup": 0.0, "adversary_speed": 1.0, "loss_weights": {}},
 "optim": {"epochs": 5, "batch_size": 32, "optimizer": "adam", "learning_rate": 0.001, "lr_schedule": "cosine",
 "weight_decay": null, "early_stopping": null, "monitor": "lfw", "max_steps_per_epoch": null},
 "runtime": {"strategy": "auto", "mixed_precision": "auto", "jit_compile": "auto", "deterministic": false,
 "tensorboard": true}}
""")


def all_keys(tree) -> set[str]:
    if not isinstance(tree, dict):
        return set()
    return set(tree) | {k for value in tree.values() for k in all_keys(value)}


def as_older_version(saved: dict) -> dict:
    """A config.json of this version in an older version's layout: the task's settings in
    "model" beside every other task's defaults, val_pairs in "data", monitor in "optim"."""
    old = {key: value for key, value in saved.items() if key != saved["task"]}
    own = dict(saved.get(saved["task"], {}))
    old["data"] = {**old["data"], "val_pairs": own.pop("val_pairs", [])}
    old["optim"] = {**old["optim"], "monitor": own.pop("monitor", "validation")}
    old["model"] = {**old["model"], **OLD_TASK_SETTINGS, **own}
    return old


def test_an_attributes_run_saves_no_setting_of_another_task(demo_dir, tmp_path):  # noqa: F811
    config = tiny_config(demo_dir, tmp_path, epochs=1, max_steps_per_epoch=1)
    assert config.task == "attributes" and config.task_config is None
    run_dir = train(config, log=lambda *_: None)
    saved = json.loads((run_dir / "config.json").read_text())
    assert list(saved) == SECTIONS
    assert not all_keys(saved) & TASK_SETTINGS, all_keys(saved) & TASK_SETTINGS
    assert load_run_config(run_dir) == config


def test_a_recognition_run_saves_its_section_and_resumes_also_from_an_older_layout(demo_dir, tmp_path):  # noqa: F811
    config = TrainConfig.from_dict(dict(
        task="recognition", data=str(demo_dir / "images"), split="identity", views="single", test_fraction=0.25,
        validation_fraction=0.25, backbone="vit", backbone_kwargs=TINY_VIT, embedding_dim=16, image_size=32,
        batch_size=8, epochs=3, loss="cosface", loss_kwargs={"scale": 16.0}, augment=False, out=str(tmp_path),
        run_id="rec", tensorboard=False))
    run_dir = tmp_path / "rec"
    with pytest.raises(KeyboardInterrupt):
        train(config, log=lambda *_: None, callbacks=[InterruptAt(1)])
    saved = json.loads((run_dir / "config.json").read_text())
    assert list(saved) == [*SECTIONS[:6], "recognition", *SECTIONS[6:]]
    assert saved["recognition"] == {**dataclasses.asdict(RecognitionConfig()), "loss": "cosface",
                                    "loss_kwargs": {"scale": 16.0}, "embedding_dim": 16}
    assert not all_keys({k: v for k, v in saved.items() if k != "recognition"}) & TASK_SETTINGS
    assert load_run_config(run_dir) == config

    with pytest.raises(KeyboardInterrupt):
        train(resume=run_dir, log=lambda *_: None, callbacks=[InterruptAt(2)])
    assert json.loads((run_dir / "config.json").read_text()) == saved

    # a run that an older version started: its config.json in the old layout resumes, and is rewritten in the new
    (run_dir / "config.json").write_text(json.dumps(as_older_version(saved)))
    with pytest.warns(DeprecationWarning, match=r"model\.loss, model\.loss_kwargs, .*model\.embedding_dim.* now in "
                                                r"section 'recognition'; .*model\.adversary_speed.* left out"):
        train(resume=run_dir, log=lambda *_: None)
    assert json.loads((run_dir / "config.json").read_text()) == saved
    report = load_run_report(run_dir)
    assert len(report["history"]["loss"]) == 3
    assert "embedding 16 -> cosface head" in report["card"]["layout"]


def test_older_config_files_load_into_the_run_tasks_section():
    with pytest.warns(DeprecationWarning, match="an older run's config"):
        recognition = TrainConfig.from_dict(OLD_RECOGNITION_RUN)
    assert recognition.task_config == RecognitionConfig(loss="cosface", loss_kwargs={"scale": 16.0}, embedding_dim=64,
                                                        val_pairs=["/sets/lfw/pairs.txt"], monitor="lfw")
    assert (recognition.model.backbone, recognition.data.image_size, recognition.optim.epochs) == ("iresnet18", 40, 5)
    new = recognition.to_dict()
    assert set(new["recognition"]) == {f.name for f in dataclasses.fields(RecognitionConfig)}
    assert not all_keys({k: v for k, v in new.items() if k != "recognition"}) & TASK_SETTINGS

    sectioned = {"task": "multitask", "model": {"backbone": "iresnet18", "loss": "normface", "adversary_speed": 10.0,
                                                "paper_settings": False, "init": None},
                 "optim": {"epochs": 4, "monitor": "validation"}}
    with pytest.warns(DeprecationWarning, match=r"model.paper_settings, model.init, optim.monitor left out"):
        multitask = TrainConfig.from_dict(sectioned)
    assert multitask.task_config == MultitaskConfig(loss="normface", adversary_speed=10.0)
    assert (multitask.model.backbone, multitask.optim.epochs) == ("iresnet18", 4)
    assert "multitask" in multitask.to_dict() and "recognition" not in multitask.to_dict()

    with pytest.warns(DeprecationWarning):
        attributes = TrainConfig.from_dict(as_older_version({**OLD_RECOGNITION_RUN, "task": "attributes",
                                                             "data": {"image_size": 64}, "model": {}, "optim": {}}))
    assert attributes.task_config is None and attributes.data.image_size == 64
    assert list(attributes.to_dict()) == SECTIONS

    with warnings.catch_warnings():  # flat keys, as the long flags: no old layout
        warnings.simplefilter("error")
        flat = TrainConfig.from_dict({"task": "multitask", "loss": "normface", "adversary-speed": 4, "epochs": 3,
                                      "loss_weights": {"id": 0.5}, "backbone": "vit"})
        assert flat.task_config == MultitaskConfig(loss="normface", adversary_speed=4, loss_weights={"id": 0.5})
        assert (flat.optim.epochs, flat.model.backbone) == (3, "vit")
        flat = TrainConfig.from_dict({"task": "recognition", "monitor": "lfw", "val_pairs": ["a.bin"],
                                      "init": "r.keras"})
        options = flat.task_config
        assert (options.monitor, options.val_pairs, options.init) == ("lfw", ["a.bin"], "r.keras")


def test_a_setting_of_another_task_is_refused_naming_its_section(tmp_path, capsys):
    cases = [
        ({"task": "attributes", "loss": "arcface"},
         "'loss' is a setting of section 'multitask' or 'recognition' (that task's own); "
         "this run's task is 'attributes'"),
        ({"task": "recognition", "adversary_speed": 2.0}, "'adversary_speed' is a setting of section 'multitask'"),
        ({"task": "recognition", "recognition": {"adversary_speed": 2.0}},
         "'recognition.adversary_speed' is a setting of section 'multitask'"),
        ({"task": "multitask", "multitask": {"paper_settings": True}},
         "'multitask.paper_settings' is a setting of section 'recognition'"),
        ({"task": "attributes", "recognition": {"loss": "arcface"}},
         "section 'recognition' holds the recognition task's settings; this run's task is 'attributes'"),
    ]
    for values, message in cases:
        with pytest.raises(ValueError, match=re.escape(message)):
            TrainConfig.from_dict(values)
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['recognition.lose'\]"):
        TrainConfig.from_dict({"task": "recognition", "recognition": {"lose": "arcface"}})

    from kerasface.cli import train_branches, train_recognition

    path = tmp_path / "run.yaml"
    path.write_text("task: attributes\nmodel: {backbone: resnet50}\nrecognition: {loss: arcface}\n")
    assert train_branches.main(["--config", str(path), "--dry-run"]) == 1
    assert f"error: {path}: section 'recognition' holds the recognition task's settings" in capsys.readouterr().err
    path.write_text("task: attributes\n")
    assert train_recognition.main(["--config", str(path), "--dry-run"]) == 1
    assert (f"error: {path}: a run of the attributes task; this command trains the recognition task"
            in capsys.readouterr().err)


SHARED = ["--data", "--views", "--backbone", "--head", "--bn-momentum", "--epochs", "--strategy", "--seed"]
RECOGNITION_FLAGS = ["--loss", "--loss-kwargs", "--embedding-dim", "--paper-settings", "--init",
                     "--freeze-backbone-epochs", "--modalities", "--val-pairs", "--monitor", "--exclude-identities",
                     "--min-images-per-identity"]
MULTITASK_FLAGS = ["--loss", "--loss-kwargs", "--embedding-dim", "--attributes", "--head-units", "--adversarial",
                   "--reversal-lambda", "--reversal-warmup", "--adversary-speed", "--loss-weights",
                   "--no-missing-labels"]


@pytest.mark.parametrize("command, tasks, own", [
    ("train_branches", "{attributes,identity}", []),
    ("compare_backbones", "{attributes}", []),
    ("train_recognition", "{recognition}", RECOGNITION_FLAGS),
    ("compare_losses", "{recognition}", RECOGNITION_FLAGS),
    ("train_multitask", "{multitask}", MULTITASK_FLAGS + ["--probe", "--probe-only"]),
])
def test_each_command_offers_the_flags_of_its_tasks_only(command, tasks, own, capsys):
    with pytest.raises(SystemExit) as exit_:
        importlib.import_module(f"kerasface.cli.{command}").main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    listed = set(re.findall(r"^  (--[a-z][a-z-]*)", text, flags=re.MULTILINE))
    assert f"--task {tasks}" in text
    assert set(SHARED + own) <= listed
    others = set(RECOGNITION_FLAGS + MULTITASK_FLAGS + ["--probe"]) - set(own)
    assert not listed & others, listed & others
    for task in ("recognition", "multitask"):
        assert (f"\n{task}:\n" in text) == (f"{{{task}}}" == tasks)  # the task's own group of flags


@dataclasses.dataclass
class ToyConfig:
    toy_strength: float = 1.0
    toy_names: list[str] = dataclasses.field(default_factory=list)


class ToyTask(AttributesTask):
    name = "toy"
    summary = "attributes with a strength"
    config_cls = ToyConfig

    @classmethod
    def add_arguments(cls, parser):
        group = parser.add_argument_group("toy")
        group.add_argument("--toy-strength", type=float, help="how strong (default 1)")
        group.add_argument("--toy-names", nargs="+", help="names of the toy")


def test_a_task_registered_elsewhere_brings_its_section_and_flags(monkeypatch, capsys):
    """Adding a task is one module: its class, registered, with its settings and flags."""
    import kerasface.train.run

    monkeypatch.setitem(TASKS._builders, "toy", ToyTask)
    with pytest.raises(SystemExit):
        training_command(["--help"], "kerasface-train-toy", "Train the toy.", {"task": "toy"})
    text = capsys.readouterr().out
    assert "--task {toy}" in text and "toy = attributes with a strength" in " ".join(text.split())
    assert "\ntoy:\n  --toy-strength TOY_STRENGTH\n" in text and "--loss" not in text

    seen = []
    monkeypatch.setattr(kerasface.train.run, "dry_run", lambda config: seen.append(config) or {})
    defaults = {"task": "toy", "toy_strength": 2.0, "image_size": 40}
    assert training_command(["--dry-run"], "kerasface-train-toy", "", defaults) == 0
    assert training_command(["--toy-strength", "3", "--toy-names", "a", "b", "--dry-run"], "kerasface-train-toy", "",
                            defaults) == 0
    assert [c.task_config for c in seen] == [ToyConfig(2.0), ToyConfig(3.0, ["a", "b"])]
    assert seen[1].data.image_size == 40
    saved = seen[1].to_dict()
    assert list(saved) == [*SECTIONS[:6], "toy", *SECTIONS[6:]]
    assert saved["toy"] == {"toy_strength": 3.0, "toy_names": ["a", "b"]}
    assert TrainConfig.from_dict(saved) == seen[1]
    with pytest.raises(ValueError, match="'toy_strength' is a setting of section 'toy'"):
        TrainConfig.from_dict({"task": "attributes", "toy_strength": 1.0})
