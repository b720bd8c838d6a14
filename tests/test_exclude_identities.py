"""Leaving people out of training: names from list and pair files, and a minimum image count."""

import numpy as np
import pytest

from kerasface.data.identities import filter_identities, read_identity_names
from kerasface.data.spec import DatasetSpec, Samples
from kerasface.errors import BadInputError

LFW_PAIRS = """2
Ann_Lee\t1\t2
Bob_Ray\t1\t3
Ann_Lee\t1\tCy_Ode\t1
Dee_Fox\t2\tEd_Yu\t1
"""


def test_names_come_from_a_list_an_lfw_pairs_file_and_a_pairs_csv(tmp_path):
    names = tmp_path / "people.txt"
    names.write_text("# left out\nAnn_Lee\n\n  Zed Roe  \n")
    assert read_identity_names(names) == {"Ann_Lee", "Zed Roe"}
    pairs = tmp_path / "pairs.txt"
    pairs.write_text(LFW_PAIRS)
    assert read_identity_names(pairs) == {"Ann_Lee", "Bob_Ray", "Cy_Ode", "Dee_Fox", "Ed_Yu"}
    csv = tmp_path / "pairs.csv"
    csv.write_text("path1,path2,same\nlfw/Ann_Lee/1.jpg,lfw/Ann_Lee/2.jpg,1\n/data/Bob_Ray/1.jpg,lfw/Cy_Ode/4.jpg,0\n")
    assert read_identity_names(csv) == {"Ann_Lee", "Bob_Ray", "Cy_Ode"}
    numbers = tmp_path / "ids.txt"  # numeric identities, as a RecordIO pack's, are names, not a header
    numbers.write_text("12\n7\n")
    assert read_identity_names(numbers) == {"12", "7"}
    (tmp_path / "empty.txt").write_text("# none\n")
    with pytest.raises(BadInputError, match="empty.txt: names no identity"):
        read_identity_names(tmp_path / "empty.txt")
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        read_identity_names(tmp_path / "missing.txt")


def test_exactly_the_named_people_and_those_with_few_images_are_left_out():
    people = ["Ann_Lee", "Bob_Ray", "Cy_Ode", "Dee_Fox", "Ed_Yu"]
    identity = np.array([0, 0, 0, 1, 1, 2, 2, 2, 3, 4, 4, 4, -1])
    samples = Samples(np.array([f"/f/{i}.png" for i in range(len(identity))]), identity,
                      np.zeros((len(identity), 0), np.float32))
    spec = DatasetSpec("/f", samples, people)
    kept, removed = filter_identities(spec, samples, {"Bob_Ray", "Ed_Yu", "Not_There"}, min_images=2)
    assert kept.identity.tolist() == [0, 0, 0, 2, 2, 2, -1]  # Dee_Fox has 1 image; unknown identity kept
    assert (removed.named, removed.named_images, removed.few_images, removed.few_images_images) == (2, 5, 1, 1)
    assert removed.describe(["people.txt"], 2) == ("named in people.txt: 2 identities, 5 images; "
                                                   "fewer than 2 images: 1 identity, 1 image")
    unchanged, nothing = filter_identities(spec, samples)
    assert unchanged.identity.tolist() == identity.tolist() and nothing.named == nothing.few_images == 0


def test_a_run_leaves_the_identities_with_few_images_out_of_training_only(tmp_path):
    import cv2

    from kerasface.cli.train_recognition import DEFAULTS
    from kerasface.cli.training import training_parser
    from kerasface.train.config import config_from_args
    from kerasface.train.data import load_run_data

    rng = np.random.default_rng(0)
    for person, count in enumerate([1, 2, 3, 4, 1, 2, 3, 4, 5, 2]):
        folder = tmp_path / "faces" / f"p{person}"
        folder.mkdir(parents=True)
        for k in range(count):
            assert cv2.imwrite(str(folder / f"{k}.png"), rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    parser = training_parser(None, ["recognition"])
    args = ["--data", str(tmp_path / "faces"), "--test-fraction", "0.2", "--validation-fraction", "0.2"]
    every = config_from_args(parser.parse_args(args), DEFAULTS)
    config = config_from_args(parser.parse_args(args + ["--min-images-per-identity", "3"]), DEFAULTS)
    assert (every.data.min_images_per_identity, config.data.min_images_per_identity) == (1, 3)
    before, after = load_run_data(every, progress=False), load_run_data(config, progress=False)
    counts = lambda samples: dict(zip(*np.unique(samples.identity, return_counts=True)))  # noqa: E731
    trained = counts(before.splits["train"])
    assert counts(after.splits["train"]) == {i: n for i, n in trained.items() if n >= 3}
    for split in ("validation", "test"):
        assert list(after.splits[split].paths) == list(before.splits[split].paths)
    few = [n for n in trained.values() if n < 3]
    assert after.removed_from_training == (f"fewer than 3 images: {len(few)} identit{'y' if len(few) == 1 else 'ies'}, "
                                           f"{sum(few)} image{'' if sum(few) == 1 else 's'}")
    assert f"left out of training: {after.removed_from_training}" in after.notes and before.removed_from_training == ""
    assert few
    with pytest.raises(ValueError, match=r"faces: no training samples are left .*: fewer than 9 images: "):
        load_run_data(config.replace(min_images_per_identity=9), progress=False)
