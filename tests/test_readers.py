import csv
from pathlib import Path

import numpy as np
import pytest

from kerasface.errors import BadInputError
from kerasface.data.readers import read_csv, read_dataset, read_image_folder
from kerasface.data.stats import dataset_report


def test_image_folder_reads_identities(image_folder, snapshot):
    before = snapshot(image_folder)
    dataset, spec = read_image_folder(image_folder)
    assert spec.class_names == ["person_0", "person_1", "person_2"]
    assert len(spec.samples) == 12 and spec.skipped == []
    assert spec.identity_counts() == {"person_0": 4, "person_1": 4, "person_2": 4}
    records = list(dataset.as_numpy_iterator())
    assert [r["identity"] for r in records] == spec.samples.identity.tolist()
    assert records[5]["path"].decode() == spec.samples.paths[5]
    assert "person_1" in spec.samples.paths[5]
    assert snapshot(image_folder) == before


def _lfw_like(root):
    """The clutter real dataset folders carry beside the identity folders."""
    (root / "pairs.txt").write_text("10\t300\nperson_0\t0\t1\n")
    (root / "README.md").write_text("# faces\n")
    (root / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / "person_0" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / "person_0" / "._0.jpg").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (root / "person_1" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (root / "person_2" / "notes.txt").write_text("meta")
    (root / ".ipynb_checkpoints").mkdir()
    (root / ".ipynb_checkpoints" / "0.png").write_bytes((root / "person_0" / "0.png").read_bytes())
    (root / "empty_person").mkdir()


IGNORED = {
    ".DS_Store": "hidden",
    ".ipynb_checkpoints": "hidden",
    "README.md": "not an image by name",
    "empty_person": "identity folder without images",
    "pairs.txt": "not an image by name",
    "person_0/.DS_Store": "hidden",
    "person_0/._0.jpg": "hidden",
    "person_1/Thumbs.db": "not an image by name",
    "person_2/notes.txt": "not an image by name",
}


def _ignored(spec, root):
    return {str(Path(s.path).relative_to(root)): s.reason for s in spec.ignored}


def test_image_folder_ignores_and_counts_non_images(image_folder, snapshot):
    _lfw_like(image_folder)
    before = snapshot(image_folder)
    _, spec = read_image_folder(image_folder)
    assert spec.class_names == ["person_0", "person_1", "person_2"]
    assert len(spec.samples) == 12 and spec.skipped == []
    assert spec.identity_counts() == {"person_0": 4, "person_1": 4, "person_2": 4}
    assert _ignored(spec, image_folder) == IGNORED
    summary = spec.summary()
    assert "ignored 9 file(s) or folder(s)" in summary
    assert "not an image by name (4): README.md, pairs.txt, person_1/Thumbs.db, ..." in summary
    assert "identity folder without images (1): empty_person" in summary
    report, problems = dataset_report(image_folder)
    assert problems == [] and "all 12 images usable" in report and "ignored 9" in report
    assert "pairs.txt" in report
    assert snapshot(image_folder) == before


def test_image_folder_corrupt_image_still_bad_input(image_folder, snapshot):
    _lfw_like(image_folder)
    data = (image_folder / "person_1" / "1.jpg").read_bytes()
    (image_folder / "person_1" / "cut.jpg").write_bytes(data[: len(data) // 3])
    (image_folder / "person_2" / "fake.png").write_text("not a png")
    before = snapshot(image_folder)
    with pytest.raises(BadInputError) as error:
        read_image_folder(image_folder)
    message = str(error.value)
    assert "2 unusable" in message
    assert f"{image_folder / 'person_1' / 'cut.jpg'}: truncated JPEG" in message
    assert f"{image_folder / 'person_2' / 'fake.png'}: not a JPEG, PNG or BMP" in message
    assert "pairs.txt" not in message and "Thumbs.db" not in message
    with pytest.warns(UserWarning, match="skipped 2"):
        _, spec = read_image_folder(image_folder, skip_bad=True)
    assert len(spec.samples) == 12 and spec.num_classes == 3
    assert sorted(Path(s.path).name for s in spec.skipped) == ["cut.jpg", "fake.png"]
    assert _ignored(spec, image_folder) == IGNORED
    assert "skipped 2 file(s)" in spec.summary() and "ignored 9" in spec.summary()
    assert snapshot(image_folder) == before


def test_image_folder_without_usable_images_names_the_folder(tmp_path, image_folder):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BadInputError, match=r"empty: no images found \(the folder is empty\)"):
        read_image_folder(empty)
    texts = tmp_path / "texts"
    (texts / "alice").mkdir(parents=True)
    (texts / "alice" / "notes.txt").write_text("x")
    (texts / "pairs.txt").write_text("x")
    with pytest.raises(BadInputError, match="texts: no images found; ignored 3 entries") as error:
        read_image_folder(texts)
    assert "<identity>/<image>" in str(error.value)
    with pytest.raises(BadInputError, match="no such folder"):
        read_image_folder(tmp_path / "absent")
    with pytest.raises(BadInputError, match="not a folder"):
        read_image_folder(image_folder / "person_0" / "0.png")


def test_image_outside_identity_folders_is_ignored(image_folder):
    (image_folder / "stray.png").write_bytes((image_folder / "person_0" / "0.png").read_bytes())
    (image_folder / "person_0" / "more").mkdir()
    _, spec = read_image_folder(image_folder)
    assert len(spec.samples) == 12
    assert _ignored(spec, image_folder) == {
        "person_0/more": "folder nested inside an identity folder",
        "stray.png": "image outside any identity folder",
    }


def _write_csv(path, rows, header=("path", "identity", "gender", "emotion")):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def _csv_folder(image_folder):
    files = sorted(image_folder.rglob("*.png"))
    rows = [
        (str(f.relative_to(image_folder)), f.parent.name, g, e)
        for f, g, e in zip(files, ["male", "female", "male", "male", "female", "male"],
                           ["happy", "sad", "neutral", "happy", "happy", "sad"])
    ]
    return rows


def test_csv_multi_label_encoding(image_folder):
    rows = _csv_folder(image_folder)
    _write_csv(image_folder / "labels.csv", rows)
    _, spec = read_csv(image_folder / "labels.csv")
    assert spec.label_columns == {"gender": ["female", "male"], "emotion": ["happy", "neutral", "sad"]}
    assert spec.label_names == ["gender=male", "emotion=happy", "emotion=neutral", "emotion=sad"]
    expected = np.array([[1, 1, 0, 0], [0, 0, 0, 1], [1, 0, 1, 0],
                         [1, 1, 0, 0], [0, 1, 0, 0], [1, 0, 0, 1]], np.float32)
    np.testing.assert_array_equal(spec.samples.labels, expected)
    assert spec.column_counts()["gender"] == {"female": 2, "male": 4}
    assert spec.samples.identity.tolist() == [0, 0, 1, 1, 2, 2]


def test_csv_missing_file_and_unknown_value_name_the_row(image_folder, snapshot):
    rows = _csv_folder(image_folder)
    rows[2] = ("person_1/gone.png", "person_1", "male", "happy")
    rows[4] = (rows[4][0], rows[4][1], "female", "angry")
    _write_csv(image_folder / "labels.csv", rows)
    before = snapshot(image_folder)
    vocab = {"gender": ["female", "male"], "emotion": ["happy", "neutral", "sad"]}
    with pytest.raises(BadInputError) as error:
        read_csv(image_folder / "labels.csv", label_vocabulary=vocab)
    message = str(error.value)
    assert "gone.png (row 4): file named in column 'path' does not exist" in message
    assert "(row 6): unknown value 'angry' in column 'emotion'" in message
    with pytest.warns(UserWarning):
        _, spec = read_csv(image_folder / "labels.csv", label_vocabulary=vocab, skip_bad=True)
    assert len(spec.samples) == 4 and [s.row for s in spec.skipped] == [4, 6]
    assert snapshot(image_folder) == before


def test_csv_missing_column_is_named(image_folder):
    _write_csv(image_folder / "x.csv", [("person_0/0.png", "a", "b", "c")], header=("file", "identity", "g", "e"))
    with pytest.raises(BadInputError, match="no column 'path'"):
        read_csv(image_folder / "x.csv")


def test_read_dataset_dispatch(image_folder, tmp_path):
    _, spec = read_dataset(image_folder)
    assert spec.num_classes == 3
    rows = _csv_folder(image_folder)
    _write_csv(image_folder / "labels.csv", rows)
    _, spec = read_dataset(image_folder / "labels.csv")
    assert spec.num_labels == 4
    with pytest.raises(BadInputError, match="nothing-here: no such file or folder"):
        read_dataset(tmp_path / "nothing-here")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(BadInputError, match="notes.txt: not a dataset"):
        read_dataset(tmp_path / "notes.txt")
