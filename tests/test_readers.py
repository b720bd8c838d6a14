import csv

import numpy as np
import pytest

from kerasface.errors import BadInputError
from kerasface.data.readers import read_csv, read_dataset, read_image_folder


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


def _break_folder(root):
    (root / "person_0" / "notes.txt").write_text("meta")
    data = (root / "person_1" / "1.jpg").read_bytes()
    (root / "person_1" / "cut.jpg").write_bytes(data[: len(data) // 3])
    (root / "empty_person").mkdir()
    (root / "stray.png").write_bytes((root / "person_0" / "0.png").read_bytes())


def test_image_folder_bad_input_raises_naming_files(image_folder, snapshot):
    _break_folder(image_folder)
    before = snapshot(image_folder)
    with pytest.raises(BadInputError) as error:
        read_image_folder(image_folder)
    message = str(error.value)
    for name in ("notes.txt", "cut.jpg", "empty_person", "stray.png"):
        assert name in message
    assert "4 unusable" in message
    assert snapshot(image_folder) == before


def test_image_folder_skip_bad_warns_and_counts(image_folder, snapshot):
    _break_folder(image_folder)
    before = snapshot(image_folder)
    with pytest.warns(UserWarning, match="skipped 4"):
        _, spec = read_image_folder(image_folder, skip_bad=True)
    assert len(spec.samples) == 12
    assert sorted(s.path.rsplit("/", 1)[1] for s in spec.skipped) == [
        "cut.jpg", "empty_person", "notes.txt", "stray.png"]
    assert "skipped 4 file(s)" in spec.summary()
    assert snapshot(image_folder) == before


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
    with pytest.raises(BadInputError):
        read_dataset(tmp_path / "nothing-here")
