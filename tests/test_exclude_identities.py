"""Leaving people out of training: names from list and pair files."""

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


def test_exactly_the_named_people_are_left_out():
    people = ["Ann_Lee", "Bob_Ray", "Cy_Ode", "Dee_Fox", "Ed_Yu"]
    identity = np.array([0, 0, 0, 1, 1, 2, 2, 2, 3, 4, 4, 4, -1])
    samples = Samples(np.array([f"/f/{i}.png" for i in range(len(identity))]), identity,
                      np.zeros((len(identity), 0), np.float32))
    spec = DatasetSpec("/f", samples, people)
    kept, removed = filter_identities(spec, samples, {"Bob_Ray", "Ed_Yu", "Not_There"})
    assert kept.identity.tolist() == [0, 0, 0, 2, 2, 2, 3, -1]  # an unknown identity is kept
    assert (removed.named, removed.named_images) == (2, 5)
    assert removed.describe(["people.txt"]) == "named in people.txt: 2 identities, 5 images"
    unchanged, nothing = filter_identities(spec, samples)
    assert unchanged.identity.tolist() == identity.tolist() and nothing.named == 0

