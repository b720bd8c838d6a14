"""The commands as a user runs them: exit status, one ``error:`` line on bad input, --debug.

Each command runs once as ``python pipelines/X.py`` in a subprocess (all started together, from
a folder outside the repository); the other cases call ``main([...])`` in-process.
"""

import configparser
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import only_error_line

from kerasface.cli import (benchmark_input, common, data_stats, export, make_demo_data, photometric_stereo,
                           train_branches)
from kerasface.datasets.demo import DemoConfig
from kerasface.export.savedmodel import check_export_target

REPO = Path(__file__).resolve().parents[1]
TINY = DemoConfig(identities=2, images_per_identity=3, image_size=32, num_lights=3, seed=1)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Name -> (argv, CompletedProcess-like result) of every subprocess case, run in parallel."""
    where = tmp_path_factory.mktemp("cli")
    (where / "a-file").write_text("not a folder")
    missing = where / "missing"
    cases = {
        "export": ["export.py", "--run", str(missing)],
        "make_demo_data": ["make_demo_data.py", "--out", str(where / "a-file"), "--quiet"],
        "photometric_stereo": ["photometric_stereo.py", "--data", str(missing), "--out", str(where / "out")],
        "data_stats": ["data_stats.py", "--data", str(missing)],
        "benchmark_input": ["benchmark_input.py", "--data", str(missing)],
        "benchmark_train": ["benchmark_train.py", "--backbone", "no-such-net"],
        "train_branches": ["train_branches.py", "--data", str(missing), "--out", str(where / "runs")],
        "debug": ["data_stats.py", "--data", str(missing), "--debug"],
    }
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("KERASFACE_DEBUG", None)
    started = {
        name: subprocess.Popen([sys.executable, str(REPO / "pipelines" / args[0]), *args[1:]], cwd=where, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name, args in cases.items()
    }
    results = {}
    for name, process in started.items():
        stdout, stderr = process.communicate(timeout=120)
        results[name] = (process.returncode, stdout, stderr)
    return where, results


@pytest.mark.parametrize("name, named", [
    ("export", "missing"),
    ("make_demo_data", "a-file exists and is not a folder"),
    ("photometric_stereo", "missing: no such folder"),
    ("data_stats", "missing: no such file or folder"),
    ("benchmark_input", "missing: no such file or folder"),
    ("train_branches", "missing: no such file or folder"),
    ("benchmark_train", "unknown backbone 'no-such-net'; choose one of: "),
])
def test_bad_input_gives_one_error_line_and_status_1(runs, name, named):
    where, results = runs
    status, _, stderr = results[name]
    assert status == 1, stderr
    line = only_error_line(stderr)
    assert named in line
    if name != "benchmark_train":
        assert str(where) in line
    assert "Traceback" not in stderr


def test_debug_shows_the_traceback(runs):
    where, results = runs
    status, _, stderr = results["debug"]
    assert status == 1
    assert "Traceback (most recent call last)" in stderr
    assert f"BadInputError: {where / 'missing'}: no such file or folder" in stderr


def test_empty_and_wrong_inputs_name_the_path(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "labels.csv").write_text("file,identity\nperson_0/0.png,a\n")
    (tmp_path / "lights-only" / "photometric").mkdir(parents=True)
    (tmp_path / "lights-only" / "lights.json").write_text(json.dumps({"lights": [[0, 0, 1], [1, 0, 1], [0, 1, 1]]}))
    cases = [
        (data_stats.main, ["--data", str(empty)], f"error: {empty}: no images found (the folder is empty)"),
        (benchmark_input.main, ["--data", str(empty)], f"error: {empty}: no images found"),
        (data_stats.main, ["--data", str(tmp_path / "labels.csv")],
         f"error: {tmp_path / 'labels.csv'}: no column 'path'; columns are ['file', 'identity']"),
        (photometric_stereo.main, ["--data", str(empty), "--out", str(tmp_path / "o")],
         f"error: {empty}: no photometric-stereo data"),
        (photometric_stereo.main, ["--data", str(tmp_path / "lights-only"), "--out", str(tmp_path / "o")],
         f"error: {tmp_path / 'lights-only' / 'photometric'}: no sample folders"),
        (export.main, ["--run", str(empty)], f"error: {empty}"),
        (make_demo_data.main, ["--out", str(tmp_path / "x"), "--identities", "0", "--quiet"],
         "error: DemoConfig.identities must be >= 1, got 0"),
    ]
    for main, argv, expected in cases:
        assert main(argv) == 1, argv
        assert only_error_line(capsys.readouterr().err).startswith(expected), argv
    assert not (tmp_path / "o").exists() and not (tmp_path / "x").exists()


def test_training_on_unusable_data_names_the_file_and_the_fix(tmp_path, capsys, image_folder):
    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "labels.csv").write_text("file,identity\nperson_0/0.png,a\n")
    one = tmp_path / "one" / "only_person"
    one.mkdir(parents=True)
    for name in ("0.png", "1.png"):
        (one / name).write_bytes((image_folder / "person_0" / "0.png").read_bytes())
    single = tmp_path / "single.csv"
    single.write_text("path,identity,glasses\n" + "".join(
        f"{image_folder / 'person_0' / f}," + "a,yes\n" for f in ("0.png", "3.png")))
    runs = ["--out", str(tmp_path / "runs")]
    cases = [
        (["--data", str(empty)], f"error: {empty}: no images found"),
        (["--data", str(tmp_path / "labels.csv")], f"error: {tmp_path / 'labels.csv'}: no column 'path'"),
        (["--data", str(tmp_path / "one"), "--task", "identity"],
         f"error: {tmp_path / 'one'}: one identity only (['only_person']); identity classification needs"),
        (["--data", str(single)], f"error: {single}: label column 'glasses' holds one value only ('yes')"),
        (["--data", str(image_folder)], f"error: {image_folder}: no attribute label columns"),
    ]
    for argv, expected in cases:
        assert train_branches.main(argv + runs) == 1, argv
        assert only_error_line(capsys.readouterr().err).startswith(expected), argv
    assert not (tmp_path / "runs").exists()


def test_happy_paths(tmp_path, capsys, image_folder, snapshot):
    demo = tmp_path / "demo"
    size = ["--identities", "2", "--images-per-identity", "3", "--image-size", "32", "--lights", "3", "--quiet"]
    assert make_demo_data.main(["--out", str(demo), *size]) == 0
    assert f"wrote 6 images of 2 identities to {demo}" in capsys.readouterr().out
    assert len(list((demo / "images").rglob("*.png"))) == 6
    before = snapshot(demo)

    assert data_stats.main(["--data", str(demo)]) == 0
    out = capsys.readouterr().out
    assert "6 samples, 2 identities" in out and "all 6 images usable" in out

    assert photometric_stereo.main(["--data", str(demo), "--out", str(tmp_path / "tiles"), "--quiet"]) == 0
    assert "6 tile(s) written" in capsys.readouterr().out

    argv = ["--data", str(demo), "--seconds", "0.05", "--batch-size", "2", "--threads", "1", "--image-size", "16"]
    assert benchmark_input.main(argv) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert len(rows) == 3 and all(row["images_per_s"] > 0 for row in rows)
    assert snapshot(demo) == before

    (image_folder / "pairs.txt").write_text("10\t300\n")
    (image_folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    data = (image_folder / "person_1" / "1.jpg").read_bytes()
    (image_folder / "person_1" / "cut.jpg").write_bytes(data[: len(data) // 3])
    assert data_stats.main(["--data", str(image_folder)]) == 1
    out = capsys.readouterr().out
    assert f"{image_folder / 'person_1' / 'cut.jpg'}: truncated JPEG" in out
    assert "ignored 2 file(s) or folder(s)" in out and "pairs.txt" in out


def test_run_main_statuses_and_messages(capsys):
    def interrupted(argv):
        raise KeyboardInterrupt

    def missing_key(argv):
        raise KeyError("unknown head 'x'; choose one of: a, b")

    def missing_file(argv):
        open("/no/such/file.txt")

    def bug(argv):
        raise TypeError("a bug")

    assert common.run_main(interrupted, []) == 130
    assert capsys.readouterr().err.strip() == "interrupted"
    assert common.run_main(missing_key, []) == 1
    assert capsys.readouterr().err == "error: unknown head 'x'; choose one of: a, b\n"
    assert common.run_main(missing_file, []) == 1
    assert capsys.readouterr().err == "error: No such file or directory: /no/such/file.txt\n"
    assert common.run_main(lambda argv: None, []) == 0
    with pytest.raises(TypeError):
        common.run_main(bug, [])
    with pytest.raises(KeyError):
        common.run_main(missing_key, ["--debug"])
    with pytest.raises(KeyboardInterrupt):
        common.cli_main(interrupted)(["--debug"])


def test_error_message_drops_tensorflow_decorations():
    traced = ValueError('in user code:\n\n    File "decode.py", line 47, in resize_image  *\n'
                        "        return tf.image.resize_with_pad(image, height, width)\n\n"
                        "    ValueError: target_width must be > 0.\n")
    assert common.error_message(traced) == "ValueError: target_width must be > 0."
    op = RuntimeError("{{function_node __wrapped__BatchDatasetV2_device_/job:localhost/replica:0/task:0/device:CPU:0}}"
                      " Batch size must be greater than zero. [Op:BatchDatasetV2] name: ")
    assert common.error_message(op) == "Batch size must be greater than zero."


def test_numbers_out_of_range_are_usage_errors(capsys):
    for argv, message in [(["--batch-size", "0"], "argument --batch-size: must be > 0, got 0"),
                          (["--seconds", "nan"], "argument --seconds: must be > 0.0, got nan"),
                          (["--threads", "two"], "argument --threads: not an int: 'two'")]:
        with pytest.raises(SystemExit) as exit_:
            benchmark_input.main(argv)
        assert exit_.value.code == 2
        assert capsys.readouterr().err.strip().endswith(message)


def test_export_refuses_an_occupied_target(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "saved_model.pb").write_bytes(b"x")
    (tmp_path / "file").write_text("x")
    check_export_target(tmp_path / "absent")
    with pytest.raises(FileExistsError, match="full: exists and is not empty; choose another output folder"):
        check_export_target(tmp_path / "full")
    with pytest.raises(FileExistsError, match="file: exists and is not a folder"):
        check_export_target(tmp_path / "file")


def test_console_scripts_point_at_the_commands():
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    lines = [line.split("=") for line in config["options.entry_points"]["console_scripts"].strip().splitlines()]
    scripts = {name.strip(): target.strip() for name, target in lines}
    commands = sorted(path.stem for path in (REPO / "pipelines").glob("*.py"))
    assert {"train_branches", "train_recognition", "compare_losses", "evaluate", "export"} <= set(commands)
    assert scripts == {f"kerasface-{c.replace('_', '-')}": f"kerasface.cli.{c}:main" for c in commands}
    for command in commands:
        assert callable(importlib.import_module(f"kerasface.cli.{command}").main)
        wrapper = (REPO / "pipelines" / f"{command}.py").read_text()
        assert f"from kerasface.cli.{command} import main" in wrapper and "sys.exit(main())" in wrapper
