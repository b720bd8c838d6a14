"""Pair-set readers: LFW pairs.txt, insightface .bin (restricted unpickler), pair CSVs."""

import os
import pickle

import numpy as np
import pytest

from kerasface.errors import BadInputError
from kerasface.eval.pairs import contiguous_folds, load_pair_set, read_bin, read_lfw_pairs, read_pairs_csv

PEOPLE = {"Ann_Lee": 3, "Bob_Ray": 2, "Cy_Ode": 1, "Dee_Fox": 2}

PAIRS_TXT = """2\t2
Ann_Lee\t1\t2
Bob_Ray\t1\t2
Ann_Lee\t1\tCy_Ode\t1
Bob_Ray\t2\tDee_Fox\t1
Ann_Lee\t2\t3
Dee_Fox\t1\t2
Ann_Lee\t3\tBob_Ray\t1
Cy_Ode\t1\tDee_Fox\t2
"""


def write_lfw(root, pairs_text=PAIRS_TXT, sub="images"):
    images = root / sub if sub else root
    for person, count in PEOPLE.items():
        (images / person).mkdir(parents=True)
        for i in range(1, count + 1):
            (images / person / f"{person}_{i:04d}.jpg").write_bytes(b"\xff\xd8\xff" + person.encode() + bytes([i]))
    (root / "pairs.txt").write_text(pairs_text)
    return root / "pairs.txt"


def test_pairs_txt_reads_pairs_labels_and_declared_folds(tmp_path):
    path = write_lfw(tmp_path / "lfw")
    pairs = load_pair_set(path)
    assert pairs.name == "lfw" and pairs.num_pairs == 8
    assert pairs.issame.tolist() == [True, True, False, False, True, True, False, False]
    assert pairs.folds.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    root = tmp_path / "lfw" / "images"
    assert pairs.images[:2] == [str(root / "Ann_Lee" / "Ann_Lee_0001.jpg"), str(root / "Ann_Lee" / "Ann_Lee_0002.jpg")]
    assert pairs.images[4:6] == [str(root / "Ann_Lee" / "Ann_Lee_0001.jpg"), str(root / "Cy_Ode" / "Cy_Ode_0001.jpg")]
    assert all(os.path.isfile(p) for p in pairs.images)


def test_pairs_txt_image_root_is_the_folder_without_images_subfolder(tmp_path):
    path = write_lfw(tmp_path / "lfw", sub="")
    assert load_pair_set(path).images[0] == str(tmp_path / "lfw" / "Ann_Lee" / "Ann_Lee_0001.jpg")
    other = tmp_path / "elsewhere"
    write_lfw(other, sub="")
    moved = read_lfw_pairs(path, images_dir=other)
    assert moved.images[0] == str(other / "Ann_Lee" / "Ann_Lee_0001.jpg")


def test_pairs_txt_of_one_set_gets_ten_folds_of_both_classes(tmp_path):
    lines = ["20"] + ["Ann_Lee\t1\t2"] * 20 + ["Ann_Lee\t1\tBob_Ray\t1"] * 20
    pairs = read_lfw_pairs(write_lfw(tmp_path / "lfw", "\n".join(lines) + "\n"))
    assert pairs.num_folds == 10
    for fold in range(10):
        assert pairs.issame[pairs.folds == fold].tolist() == [True, True, False, False]


@pytest.mark.parametrize("line, number, named", [
    ("Ann_Lee\t1\t9", 6, "Ann_Lee_0009.jpg not found"),
    ("Ann_Lee\t1\tZed_Nobody\t1", 6, "Zed_Nobody_0001.jpg not found"),
    ("Ann_Lee\t1", 6, "expected 'name i j' or 'name1 i name2 j'"),
    ("Ann_Lee\tone\t2", 6, "image number 'one' is not a positive integer"),
])
def test_pairs_txt_bad_lines_are_named(tmp_path, line, number, named):
    lines = PAIRS_TXT.splitlines()
    lines[number - 1] = line
    path = write_lfw(tmp_path / "lfw", "\n".join(lines) + "\n")
    with pytest.raises(BadInputError, match=f"line {number}: ") as info:
        load_pair_set(path)
    assert str(path) in str(info.value) and named in str(info.value)


def test_pairs_txt_header_and_count_mismatch(tmp_path):
    path = write_lfw(tmp_path / "a", "ten 300\n" + PAIRS_TXT.split("\n", 1)[1])
    with pytest.raises(BadInputError, match="line 1: expected the header"):
        load_pair_set(path)
    path = write_lfw(tmp_path / "b", "3 2\n" + PAIRS_TXT.split("\n", 1)[1])
    with pytest.raises(BadInputError, match=r"declares 3 fold\(s\) .* \(12 lines\), but the file has 8"):
        load_pair_set(path)


# insightface .bin

def bin_payload(n=12):
    images = [b"\xff\xd8\xff" + bytes([k]) * 5 for k in range(2 * n)]
    return images, [k % 2 == 0 for k in range(n)]


@pytest.mark.parametrize("protocol", [2, 4, pickle.HIGHEST_PROTOCOL])
def test_bin_reads_images_and_labels(tmp_path, protocol):
    images, issame = bin_payload()
    path = tmp_path / "agedb_30.bin"
    path.write_bytes(pickle.dumps((images, issame), protocol=protocol))
    pairs = load_pair_set(path)
    assert pairs.name == "agedb_30" and pairs.images == images and pairs.issame.tolist() == issame
    assert pairs.folds.tolist() == contiguous_folds(12).tolist() == [0, 0, 1, 1] + list(range(2, 10))


def test_bin_written_by_python2_reads_its_strings_as_bytes(tmp_path):
    """Python 2 pickles ``str`` as SHORT_BINSTRING; protocol 2: ([b'ab', b'cd'], [True])."""
    data = b"\x80\x02]q\x00(U\x02abq\x01U\x02cdq\x02e]q\x03\x88a\x86q\x04."
    path = tmp_path / "lfw.bin"
    path.write_bytes(data)
    pairs = read_bin(path)
    assert pairs.images == [b"ab", b"cd"] and pairs.issame.tolist() == [True]


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_malicious_bin_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "lfw.bin"
    path.write_bytes(pickle.dumps(([b"a", _Exploit(marker)], [True])))
    assert b"system" in path.read_bytes()
    with pytest.raises(BadInputError, match=r"lfw.bin: .*refuses the global (posix|os|nt)\.system"):
        load_pair_set(path)
    assert not marker.exists()
    pickle.loads(path.read_bytes())  # the payload is real: a plain unpickler runs it
    assert marker.exists()


@pytest.mark.parametrize("payload, named", [
    ({"images": []}, "expected a pickle of (list of encoded images, list of bools), got dict"),
    (([b"a", b"b", b"c"], [True]), "3 images for 1 pairs"),
    (([b"a", "b"], [True]), "image 1 is str, not encoded image bytes"),
    (([b"a", b"b"], ["yes"]), "issame[0] is str, not a bool"),
    (([b"a", b"b"], [True], 3), "got a tuple of 3"),
])
def test_bin_of_another_structure_is_refused(tmp_path, payload, named):
    path = tmp_path / "cfp_fp.bin"
    path.write_bytes(pickle.dumps(payload))
    with pytest.raises(BadInputError) as info:
        load_pair_set(path)
    assert str(path) in str(info.value) and named in str(info.value)


def test_bin_holding_numpy_arrays_or_garbage_is_refused(tmp_path):
    path = tmp_path / "arrays.bin"
    path.write_bytes(pickle.dumps(([np.frombuffer(b"abc", np.uint8)] * 2, [True])))
    with pytest.raises(BadInputError, match=r"arrays.bin: .*refuses the global numpy"):
        load_pair_set(path)
    path.write_bytes(b"not a pickle at all")
    with pytest.raises(BadInputError, match="arrays.bin: not a plain pickle"):
        load_pair_set(path)


# CSV

def test_pairs_csv_relative_and_absolute_paths(tmp_path):
    write_lfw(tmp_path, sub="images")
    absolute = tmp_path / "images" / "Bob_Ray" / "Bob_Ray_0001.jpg"
    rows = ["path1,path2,same", "images/Ann_Lee/Ann_Lee_0001.jpg,images/Ann_Lee/Ann_Lee_0002.jpg,1",
            f"images/Ann_Lee/Ann_Lee_0001.jpg,{absolute},false", f"{absolute},images/Bob_Ray/Bob_Ray_0002.jpg,TRUE",
            "images/Cy_Ode/Cy_Ode_0001.jpg,images/Dee_Fox/Dee_Fox_0001.jpg,0"]
    (tmp_path / "mine.csv").write_text("\n".join(rows) + "\n")
    pairs = load_pair_set(tmp_path / "mine.csv")
    assert pairs.name == "mine" and pairs.issame.tolist() == [True, False, True, False]
    assert pairs.images[3] == str(absolute) and pairs.images[0] == str(tmp_path / "images/Ann_Lee/Ann_Lee_0001.jpg")
    assert pairs.folds.tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("row, named", [
    ("images/Ann_Lee/Ann_Lee_0001.jpg,images/Ann_Lee/Ann_Lee_0009.jpg,1", "line 3: image"),
    ("images/Ann_Lee/Ann_Lee_0001.jpg,images/Ann_Lee/Ann_Lee_0002.jpg,maybe", "line 3: 'same' must be"),
    ("images/Ann_Lee/Ann_Lee_0001.jpg", "line 3: 1 fields, expected 3"),
])
def test_pairs_csv_bad_rows_are_named(tmp_path, row, named):
    write_lfw(tmp_path, sub="images")
    text = "path1,path2,same\nimages/Ann_Lee/Ann_Lee_0001.jpg,images/Ann_Lee/Ann_Lee_0002.jpg,1\n" + row + "\n"
    (tmp_path / "bad.csv").write_text(text)
    with pytest.raises(BadInputError, match=named):
        read_pairs_csv(tmp_path / "bad.csv")
    (tmp_path / "nohead.csv").write_text("a,b,c\n")
    with pytest.raises(BadInputError, match="line 1: expected the header path1,path2,same"):
        read_pairs_csv(tmp_path / "nohead.csv")
