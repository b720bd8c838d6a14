"""Recognition runs on real-data terms: standard pair sets verified every epoch, the monitor that
picks the best checkpoint, and head settings that follow the training data's size."""

import json
import math
import pickle

import cv2
import numpy as np
import pytest

from kerasface.errors import BadInputError
from kerasface.report import load_run_report
from kerasface.train.callbacks import read_run_state
from kerasface.train.config import TrainConfig, config_from_args, load_run_config
from kerasface.saving import load_model
from kerasface.train.recognition import DEMO_ARCFACE_MARGIN, DEMO_HEAD_SCALE, head_classes
from kerasface.train.recognition_defaults import recognition_defaults
from kerasface.train.run import train
from test_train import TINY_VIT, ZeroWeightsIn


def colour_faces(rng, identities, per_identity, size=32, noise=20):
    """Per identity a colour, and per image that colour plus noise: {identity: [uint8 images]}."""
    faces = {}
    for identity in range(identities):
        colour = rng.integers(30, 226, 3)
        faces[identity] = [np.clip(colour + rng.integers(-noise, noise + 1, (size, size, 3)), 0, 255).astype(np.uint8)
                           for _ in range(per_identity)]
    return faces


def write_folder(root, faces, prefix):
    """An image folder in LFW's layout: ``<root>/<name>/<name>_<iiii>.jpg``; the names."""
    names = []
    for identity, images in faces.items():
        name = f"{prefix}_{identity:03d}"
        (root / name).mkdir(parents=True)
        for k, image in enumerate(images, 1):
            cv2.imwrite(str(root / name / f"{name}_{k:04d}.jpg"), image)
        names.append(name)
    return names


def pairs_of(count):
    """(same pairs, different pairs) of image indices (identity, image) over ``count`` identities."""
    same = [((i, 0), (i, 1)) for i in range(count)]
    different = [((i, 0), ((i + 1) % count, 1)) for i in range(count)]
    return same, different


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipe")
    rng = np.random.default_rng(0)
    write_folder(root / "train", colour_faces(rng, 12, 4), "person")
    lfw_faces = colour_faces(rng, 10, 2)
    names = write_folder(root / "lfw", lfw_faces, "lfw")
    same, different = pairs_of(10)
    lines = [f"{names[a[0]]}\t{a[1] + 1}\t{b[1] + 1}" for a, b in same]
    lines += [f"{names[a[0]]}\t{a[1] + 1}\t{names[b[0]]}\t{b[1] + 1}" for a, b in different]
    (root / "lfw" / "pairs.txt").write_text("10\n" + "\n".join(lines) + "\n")
    cfp_faces = colour_faces(rng, 10, 2)
    encoded, issame = [], []
    for pairs, label in zip(pairs_of(10), (True, False)):
        for a, b in pairs:
            encoded += [cv2.imencode(".png", cfp_faces[i][k])[1].tobytes() for i, k in (a, b)]
            issame.append(label)
    (root / "cfp_fp.bin").write_bytes(pickle.dumps((encoded, issame), protocol=4))
    return root


def recognition_config(data, out, **overrides):
    values = dict(task="recognition", data=str(data / "train"), split="identity", views="single",
                  test_fraction=0.25, validation_fraction=0.25, backbone="vit", backbone_kwargs=TINY_VIT,
                  embedding_dim=16, image_size=32, batch_size=8, epochs=3, loss="arcface", augment=False,
                  out=str(out), run_id="run", tensorboard=False)
    values.update(overrides)
    return TrainConfig.from_dict(values)


def test_val_pairs_are_verified_every_epoch_and_the_monitor_set_picks_the_best_checkpoint(data, tmp_path):
    sets = [str(data / "lfw" / "pairs.txt"), str(data / "cfp_fp.bin")]
    config = recognition_config(data, tmp_path, val_pairs=sets, monitor="cfp_fp")
    run_dir = train(config, log=lambda *_: None, callbacks=[ZeroWeightsIn(2)])
    report = load_run_report(run_dir)
    history, card = report["history"], report["card"]
    for name in ("lfw", "cfp_fp", "validation", "test"):
        for figure in ("accuracy", "auc_cosine", "auc_euclidean", "eer"):
            assert len(history[f"val_{name}_{figure}"]) == 3
    monitored = history["val_cfp_fp_auc_cosine"]
    assert monitored[2] == 0.5 and max(monitored[:2]) > 0.5  # equal embeddings score chance
    best = int(np.argmax(monitored)) + 1
    state = read_run_state(run_dir / "checkpoints")
    assert card["monitor"] == state["monitor"] == "val_cfp_fp_auc_cosine"
    assert card["best_epoch"] == state["best_epoch"] == best
    assert load_run_config(run_dir).task_config.val_pairs == sets


def test_an_unknown_monitor_set_and_two_sets_of_one_name_are_refused(data, tmp_path):
    pairs = str(data / "lfw" / "pairs.txt")
    with pytest.raises(BadInputError, match=r"--monitor 'agedb_30'.*\['lfw'\]"):
        train(recognition_config(data, tmp_path, val_pairs=[pairs], monitor="agedb_30"), log=lambda *_: None)
    with pytest.raises(BadInputError, match=r"cfp_fp.bin: --val-pairs set 'cfp_fp' is named as"):
        train(recognition_config(data, tmp_path, val_pairs=[str(data / "cfp_fp.bin")] * 2), log=lambda *_: None)
    assert not (tmp_path / "run").exists()


def test_head_settings_follow_the_number_of_training_identities():
    kwargs, reason = recognition_defaults("arcface", 60, 12.0)
    assert kwargs == {"scale": DEMO_HEAD_SCALE, "margin": DEMO_ARCFACE_MARGIN}  # the demo's measured settings
    assert "60 training identities" in reason and "AdaCos" in reason
    assert recognition_defaults("arcface", 10_000, 50.0)[0]["margin"] == 0.5
    assert recognition_defaults("arcface", 1_000, 20.0)[0]["margin"] == pytest.approx(0.4)
    assert recognition_defaults("arcface", 1_000, 5.5)[0]["margin"] == pytest.approx(0.2)
    assert recognition_defaults("arcface", 10_000, 1.0)[0]["margin"] == 0.0
    assert recognition_defaults("arcface", 1_000_000, 2.0)[0]["scale"] == round(math.sqrt(2) * math.log(999_999), 2)
    assert recognition_defaults("cosface", 500, 2.0)[0] == {"scale": 16.0}
    given, reason = recognition_defaults("arcface", 60, 20.0, {"scale": 30.0, "sample_rate": 0.1})
    assert given == {"scale": 30.0, "margin": 0.3, "sample_rate": 0.1}
    assert "given in loss_kwargs: sample_rate, scale" in reason and "AdaCos" not in reason
    assert recognition_defaults(None, 60, 2.0)[0] == {}


def test_paper_settings_flag_leaves_the_heads_own_defaults():
    from kerasface.cli.train_recognition import DEFAULTS, demo_defaults
    from kerasface.cli.training import training_parser

    parser = training_parser(None, ["recognition"])
    config = lambda *argv: config_from_args(parser.parse_args(list(argv)), DEFAULTS, demo_defaults)  # noqa: E731
    paper = config("--paper-settings")
    assert paper.task_config.paper_settings and paper.task_config.loss_kwargs == {}
    assert config().task_config.loss_kwargs == {"scale": DEMO_HEAD_SCALE, "margin": DEMO_ARCFACE_MARGIN}
    own = config("--data", "faces/", "--val-pairs", "lfw/pairs.txt", "--monitor", "lfw")
    assert (own.task_config.paper_settings, own.task_config.monitor, own.optim.epochs) == (False, "lfw", 20)
    assert own.task_config.val_pairs[0].endswith("lfw/pairs.txt")


def test_many_identities_of_few_images_train_above_chance_with_the_data_settings(tmp_path):
    """The rule's scale and margin, recorded in the config and the report, on 40 identities of 3
    images each (32 in training)."""
    root = tmp_path / "faces"
    write_folder(root, colour_faces(np.random.default_rng(1), 40, 3, size=24, noise=60), "p")
    config = TrainConfig.from_dict(dict(
        task="recognition", data=str(root), split="identity", views="single", test_fraction=0.1,
        validation_fraction=0.1, backbone="vit", backbone_kwargs=TINY_VIT, embedding_dim=16, image_size=24,
        batch_size=16, epochs=5, learning_rate=3e-3, loss="arcface", augment=False, out=str(tmp_path),
        run_id="run", tensorboard=False))
    report = load_run_report(train(config, log=lambda *_: None))
    identities = 32
    chance = 1 / identities
    assert max(report["history"]["accuracy"]) > 2 * chance
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["recognition"]["loss_kwargs"]
    assert saved == {"scale": 16.0, "margin": round(0.3 * 2 / 9, 3)}
    section = next(s for s in report["sections"] if s["title"] == "Loss settings")
    assert f"{identities} training identities, 3.0 images each" in section["text"]
    assert "Loss settings" in (tmp_path / "run" / "report.md").read_text()


def test_head_classes_number_the_trained_identities_first_and_keep_each_part_in_order():
    trained = np.array([7, 2, 2, 9, 4, 7])
    head_class, count = head_classes(10, trained)
    assert count == 4
    assert sorted(head_class) == list(range(10))
    assert list(head_class[[2, 4, 7, 9]]) == [0, 1, 2, 3]
    assert list(head_class[[0, 1, 3, 5, 6, 8]]) == [4, 5, 6, 7, 8, 9]


def test_the_margin_head_holds_a_centre_per_training_identity_only(data, tmp_path):
    """12 identities: 3 for test and 3 for validation; the head learns the other 6."""
    run_dir = train(recognition_config(data, tmp_path, epochs=1), log=lambda *_: None)
    report = load_run_report(run_dir)
    head = load_model(run_dir / "checkpoints" / "last.keras").get_layer("margin_head")
    assert [tuple(w.shape) for w in head.weights] == [(16, 6)]
    assert "arcface head (6 identities)" in report["card"]["layout"]
    assert report["results"]["test"]["accuracy"] > 0


def test_a_run_scored_on_its_pair_sets_trains_every_identity_and_reports_the_sets(data, tmp_path):
    """--test-fraction 0 --validation-fraction 0 with --val-pairs: all 12 identities trained, the
    pair sets' figures of the best epoch are the run's results, and a loss table reports the set."""
    from kerasface.train.compare import compare_losses

    sets = [str(data / "lfw" / "pairs.txt"), str(data / "cfp_fp.bin")]
    config = recognition_config(data, tmp_path, epochs=2, test_fraction=0.0, validation_fraction=0.0,
                                val_pairs=sets, monitor="lfw")
    out = compare_losses(config, ["arcface"], out=tmp_path / "table", log=lambda *_: None)
    report = load_run_report(out / "arcface")
    history, results = report["history"], report["results"]
    assert "test" not in results and set(results) >= {"train", "lfw", "cfp_fp"}
    best = report["card"]["best_epoch"]
    assert best == int(np.argmax(history["val_lfw_auc_cosine"])) + 1
    for name in ("lfw", "cfp_fp"):
        assert results[name]["auc_cosine"] == history[f"val_{name}_auc_cosine"][best - 1]
        assert results[name]["accuracy"] == history[f"val_{name}_accuracy"][best - 1]
    head = load_model(out / "arcface" / "checkpoints" / "last.keras").get_layer("margin_head")
    assert [tuple(w.shape) for w in head.weights] == [(16, 12)]
    row = json.loads((out / "table.json").read_text())["rows"][0]
    assert row["accuracy"] == results["lfw"]["accuracy"] and row["auc_cosine"] == results["lfw"]["auc_cosine"]
    assert "The lfw pairs" in (out / "table.md").read_text()


def test_no_test_split_and_no_pair_sets_is_refused_before_training(data, tmp_path):
    config = recognition_config(data, tmp_path, test_fraction=0.0, validation_fraction=0.25)
    with pytest.raises(ValueError, match="--test-fraction 0 leaves the recognition task no test split.*--val-pairs"):
        train(config, log=lambda *_: None)
    assert not (tmp_path / "run").exists()
