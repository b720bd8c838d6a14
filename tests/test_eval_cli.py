"""kerasface-evaluate as a user runs it: a table, JSON and ROC PNG on success; one ``error:`` line,
status 1 and no output file on bad input."""

import configparser
import hashlib
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest
from conftest import only_error_line

import kerasface
from kerasface.cli import evaluate
from kerasface.models import ImagePreprocessing
from kerasface.models.preprocessing import set_input_preprocessing

REPO = Path(__file__).resolve().parents[1]
COLOURS = {"Ann_Red": (220, 40, 40), "Bo_Green": (40, 220, 40), "Cy_Blue": (40, 40, 220), "Di_Yellow": (220, 220, 40)}


def pairs_lines():
    people = list(COLOURS)
    lines = ["2\t5"]
    for fold in range(2):
        lines += [f"{people[(fold + k) % 4]}\t{1 + k % 3}\t{1 + (k + 1) % 3}" for k in range(5)]
        lines += [f"{people[k % 4]}\t{1 + k % 3}\t{people[(k + 1 + fold) % 4]}\t{1 + (k + fold) % 3}" for k in range(5)]
    return lines


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """An LFW-style folder of one colour per person (3 JPEGs each), its pairs.txt, a .bin of the
    same pairs, and a .keras model whose embedding is the mean colour: every set is separable."""
    root = tmp_path_factory.mktemp("eval")
    rng = np.random.default_rng(0)
    for person, colour in COLOURS.items():
        (root / "lfw" / "images" / person).mkdir(parents=True)
        for i in range(1, 4):
            image = np.clip(np.array(colour) + rng.normal(0, 6, (40, 30, 3)), 0, 255).astype(np.uint8)
            assert cv2.imwrite(str(root / "lfw" / "images" / person / f"{person}_{i:04d}.jpg"), image[..., ::-1])
    (root / "lfw" / "pairs.txt").write_text("\n".join(pairs_lines()) + "\n")
    from kerasface.eval.pairs import read_lfw_pairs

    pairs = read_lfw_pairs(root / "lfw" / "pairs.txt")
    (root / "agedb_30.bin").write_bytes(pickle.dumps(
        ([Path(p).read_bytes() for p in pairs.images], pairs.issame.tolist())))
    set_input_preprocessing(colour_model(), resize_mode="stretch").save(root / "colour.keras")
    return root


def colour_model():
    inputs = keras.Input((24, 24, 3))
    x = keras.layers.GlobalAveragePooling2D()(ImagePreprocessing("tf")(inputs))
    return keras.Model(inputs, x)


def test_happy_path_prints_the_table_and_writes_json_and_roc(data, tmp_path, capsys):
    out = tmp_path / "results" / "eval.json"
    status = evaluate.main(["--model", str(data / "colour.keras"), "--pairs", str(data / "lfw" / "pairs.txt"),
                            str(data / "agedb_30.bin"), "--flip", "--batch-size", "7", "--out", str(out), "--quiet"])
    assert status == 0
    printed = capsys.readouterr().out
    assert "| set" in printed and "AUC cosine" in printed and "TAR@FAR=1e-3 %" in printed
    assert "| lfw " in printed and "| agedb_30 " in printed and "100.00 ± 0.00" in printed
    report = json.loads(out.read_text())
    assert list(report["sets"]) == ["lfw", "agedb_30"]
    assert report["image_size"] == [24, 24] and report["resize_mode"] == "stretch" and report["flip"] is True
    for name in ("lfw", "agedb_30"):
        figures = report["sets"][name]
        assert figures["num_pairs"] == 20 and figures["accuracy"] == 1.0 and figures["auc_cosine"] == 1.0
        assert figures["eer"] == 0.0 and figures["tar_at_far"] == {"1e-1": 1.0}  # 10 different pairs
    assert report["sets"]["lfw"]["folds"] == 2 and report["sets"]["agedb_30"]["folds"] == 10
    record = report["provenance"]
    assert record["kerasface_version"] == kerasface.__version__ and record["flip"] is True
    assert record["resize_mode"] == record["preprocessing"]["resize_mode"] == "stretch"
    assert record["preprocessing"]["value_range"] == "tf" and record["alignment"] is None
    assert record["files"]["agedb_30"] == {
        "path": str(data / "agedb_30.bin"), "sha256": hashlib.sha256((data / "agedb_30.bin").read_bytes()).hexdigest()}
    assert record["files"]["lfw"]["sha256"] == hashlib.sha256((data / "lfw" / "pairs.txt").read_bytes()).hexdigest()
    assert (tmp_path / "results" / "eval.roc.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in out.parent.iterdir()) == ["eval.json", "eval.roc.png"]


@pytest.mark.parametrize("line_number, line, named", [
    (4, "Ann_Red\t1\t7", "Ann_Red_0007.jpg not found"),
    (15, "Bo_Green\t1", "expected 'name i j' or 'name1 i name2 j'"),
])
def test_bad_pairs_file_gives_one_error_line_and_no_output(data, tmp_path, capsys, line_number, line, named):
    lines = pairs_lines()
    lines[line_number - 1] = line
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out" / "eval.json"
    status = evaluate.main(["--model", str(data / "colour.keras"), "--pairs", str(pairs),
                            "--images", str(data / "lfw" / "images"), "--out", str(out)])
    assert status == 1
    message = only_error_line(capsys.readouterr().err)
    assert f"{pairs}, line {line_number}: " in message and named in message
    assert not out.parent.exists()


def test_missing_model_and_bad_images_folder(data, tmp_path, capsys):
    out = tmp_path / "eval.json"
    args = ["--pairs", str(data / "lfw" / "pairs.txt"), "--out", str(out)]
    assert evaluate.main(["--model", str(tmp_path / "none.keras"), *args]) == 1
    assert "none.keras: no such model" in only_error_line(capsys.readouterr().err)
    assert evaluate.main(["--model", str(data / "colour.keras"), "--images", str(tmp_path / "nope"), *args]) == 1
    assert "nope: no such image folder" in only_error_line(capsys.readouterr().err)
    assert list(tmp_path.iterdir()) == []


def test_as_a_user_runs_it(data, tmp_path):
    """python pipelines/evaluate.py from another folder: a malformed header is named, nothing written."""
    bad = tmp_path / "pairs.txt"
    bad.write_text("ten folds\n" + "\n".join(pairs_lines()[1:]) + "\n")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("KERASFACE_DEBUG", None)
    result = subprocess.run(
        [sys.executable, str(REPO / "pipelines" / "evaluate.py"), "--model", str(data / "colour.keras"),
         "--pairs", str(bad), "--images", str(data / "lfw" / "images"), "--out", "eval.json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    assert f"{bad}, line 1: expected the header" in only_error_line(result.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pairs.txt"]


@pytest.mark.parametrize("recorded", ["pad", None], ids=["model records pad", "model saved before records"])
def test_a_run_folder_and_its_model_file_give_the_same_figures(data, tmp_path, recorded):
    """The photos are 40x30, so the resize matters."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"data": {"resize_mode": "pad"}}))
    set_input_preprocessing(colour_model(), resize_mode=recorded).save(run / "model.keras")
    reports = {}
    for model in (run, run / "model.keras"):
        out = tmp_path / f"{model.name}.json"
        assert evaluate.main(["--model", str(model), "--pairs", str(data / "lfw" / "pairs.txt"), "--out", str(out),
                              "--quiet"]) == 0
        reports[model.name] = json.loads(out.read_text())
    assert reports["run"]["resize_mode"] == reports["model.keras"]["resize_mode"] == "pad"
    drop = lambda figures: {k: v for k, v in figures.items() if k != "seconds"}
    assert drop(reports["run"]["sets"]["lfw"]) == drop(reports["model.keras"]["sets"]["lfw"])


def test_a_model_that_records_no_resize_is_refused_on_images_of_another_size(data, tmp_path, capsys):
    colour_model().save(tmp_path / "old.keras")
    out = tmp_path / "out" / "eval.json"
    args = ["--model", str(tmp_path / "old.keras"), "--pairs", str(data / "lfw" / "pairs.txt"), "--out", str(out)]
    assert evaluate.main(args) == 1
    message = only_error_line(capsys.readouterr().err)
    assert f"{tmp_path / 'old.keras'}: records no resize mode" in message and "_0001.jpg is 40x30" in message
    assert "--resize pad|stretch|crop" in message
    assert not out.parent.exists()
    assert evaluate.main([*args, "--resize", "stretch", "--quiet"]) == 0
    assert json.loads(out.read_text())["resize_mode"] == "stretch"


def test_console_script_is_declared():
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    scripts = config["options.entry_points"]["console_scripts"]
    assert "kerasface-evaluate = kerasface.cli.evaluate:main" in scripts
    assert evaluate.roc_path(Path("a/b.json")) == Path("a/b.roc.png")
    assert evaluate.unique_names(["lfw", "lfw", "cfp"]) == ["lfw", "lfw_2", "cfp"]
