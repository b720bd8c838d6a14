import json
import math

import numpy as np
import pytest

from kerasface.data.balance import (
    SEED_UNDERSAMPLING,
    balance_table,
    identity_balance,
    label_balance,
    load_undersampling_config,
    undersample,
    undersample_report,
    undersample_table,
)
from kerasface.data.spec import DatasetSpec, Samples, encode_labels

COLUMNS = {
    "gender": ["female", "male"],
    "spectacles": ["no", "yes"],
    "emotion": ["neutral", "smile", "surprise"],
}


def make_spec(rows, identity=None):
    n = len(rows)
    identity = np.arange(n) % 25 if identity is None else identity
    samples = Samples([f"/data/img{i:04d}.png" for i in range(n)], identity, encode_labels(COLUMNS, rows))
    return DatasetSpec("table", samples, [f"id{i}" for i in range(int(np.max(identity)) + 1)], COLUMNS)


def gender_table():
    """525 male (no spectacles) and 100 female (60 with spectacles); emotion 300/120/60 and
    145 more neutral among the remaining rows."""
    rows = []
    for i in range(625):
        male = i < 525
        emotion = "smile" if 300 <= i < 420 else "surprise" if 420 <= i < 480 else "neutral"
        rows.append({
            "gender": "male" if male else "female",
            "spectacles": "yes" if not male and i < 585 else "no",
            "emotion": emotion,
        })
    return make_spec(rows)


def counts(spec, samples):
    return {r["column"]: r["counts"] for r in label_balance(spec, samples)}


def test_label_balance_counts_majority_and_ratio():
    spec = gender_table()
    by_column = {r["column"]: r for r in label_balance(spec)}
    gender = by_column["gender"]
    assert gender["counts"] == {"female": 100, "male": 525}
    assert (gender["majority"], gender["minority"]) == ("male", "female")
    assert gender["ratio"] == pytest.approx(5.25)
    assert by_column["spectacles"]["counts"] == {"no": 565, "yes": 60}
    emotion = by_column["emotion"]
    assert emotion["counts"] == {"neutral": 445, "smile": 120, "surprise": 60}
    assert emotion["ratio"] == pytest.approx(445 / 60)


def test_label_balance_reports_inf_for_an_absent_value():
    spec = make_spec([{"gender": "male", "spectacles": "no", "emotion": "smile"}] * 4)
    by_column = {r["column"]: r for r in label_balance(spec)}
    assert by_column["gender"]["ratio"] == math.inf
    assert by_column["gender"]["minority"] == "female"
    assert by_column["emotion"]["majority"] == "smile"
    assert "inf" in balance_table(spec)


def test_identity_balance_and_table():
    rows = [{"gender": "male", "spectacles": "no", "emotion": "smile"}] * 12
    identity = np.array([0] * 6 + [1] * 3 + [2] * 2 + [-1])
    spec = make_spec(rows, identity)
    stats = identity_balance(spec)
    assert stats == {"identities": 3, "unknown": 1, "min": 2, "median": 3.0, "max": 6, "ratio": 3.0}
    table = balance_table(spec)
    assert "imbalance" in table and "max/min" in table
    assert "female: 0, male: 12" in table


def test_undersample_by_factor_matches_hand_computed_counts():
    spec = gender_table()
    kept = undersample(spec, factors={"gender": 3})
    assert counts(spec, kept)["gender"] == {"female": 100, "male": 175}
    report = {r["column"]: r for r in undersample_report(spec.samples, kept, spec)}
    assert report["gender"]["ratio_before"] == pytest.approx(5.25)
    assert report["gender"]["ratio_after"] == pytest.approx(1.75)
    assert report["gender"]["before"] == {"female": 100, "male": 525}
    # every female kept, males are a subset of the originals, original order preserved
    paths = list(spec.samples.paths)
    positions = [paths.index(p) for p in kept.paths]
    assert positions == sorted(positions)
    assert set(range(525, 625)) <= set(positions)
    np.testing.assert_array_equal(kept.identity, spec.samples.identity[positions])
    np.testing.assert_array_equal(kept.labels, spec.samples.labels[positions])
    assert "5.25" in undersample_table(spec.samples, kept, spec)
    assert "625 -> 275 samples" in undersample_table(spec.samples, kept, spec)


def test_undersample_factor_rounds_half_up_and_reduces_only_the_majority():
    spec = gender_table()
    kept = undersample(spec, factors={"emotion": 1.5})  # 445 / 1.5 = 296.67
    assert counts(spec, kept)["emotion"] == {"neutral": 297, "smile": 120, "surprise": 60}
    kept = undersample(spec, factors={"emotion": 8.9})  # 445 / 8.9 = 50 exactly
    assert counts(spec, kept)["emotion"] == {"neutral": 50, "smile": 120, "surprise": 60}
    rows = [{"gender": "male" if i < 5 else "female", "spectacles": "no", "emotion": "smile"} for i in range(7)]
    small = make_spec(rows)
    assert counts(small, undersample(small, factors={"gender": 2}))["gender"] == {"female": 2, "male": 3}


def test_undersample_to_target_ratio_keeps_minority():
    spec = gender_table()
    kept = undersample(spec, target_ratio={"emotion": 1.5})
    # minority surprise = 60 -> cap floor(1.5 * 60) = 90 for every larger value
    assert counts(spec, kept)["emotion"] == {"neutral": 90, "smile": 90, "surprise": 60}
    surprise = [f"/data/img{i:04d}.png" for i in range(420, 480)]
    assert set(surprise) <= set(kept.paths)

    kept = undersample(spec, target_ratio={"emotion": 2.5})
    # smile (120) is already <= 2.5 * 60 = 150 and stays whole
    assert counts(spec, kept)["emotion"] == {"neutral": 150, "smile": 120, "surprise": 60}
    kept = undersample(spec, target_ratio={"gender": 1.75})
    assert counts(spec, kept)["gender"] == {"female": 100, "male": 175}


def test_undersample_columns_run_in_the_given_order():
    spec = gender_table()
    first = undersample(spec, factors={"gender": 3, "spectacles": 2.5}, seed=4)
    # gender: 525 male -> 175; spectacles then sees no = 175 + 40 = 215 -> round(215 / 2.5) = 86
    assert counts(spec, first)["spectacles"] == {"no": 86, "yes": 60}
    assert len(first) == 146

    second = undersample(spec, factors={"spectacles": 2.5, "gender": 3}, seed=4)
    # spectacles: no = 565 -> 226 kept; gender then reduces whatever males remain by 3
    step = undersample(spec, factors={"spectacles": 2.5}, seed=4)
    assert counts(spec, step)["spectacles"] == {"no": 226, "yes": 60}
    males = counts(spec, step)["gender"]["male"]
    assert counts(spec, second)["gender"]["male"] == math.floor(males / 3 + 0.5)
    assert len(second) == 286 - males + math.floor(males / 3 + 0.5)
    assert len(second) != len(first)
    # one call equals the chain of single-column calls with the same seed
    chained = undersample(spec, step, factors={"gender": 3}, seed=4)
    np.testing.assert_array_equal(chained.paths, second.paths)


SEED_UNDERSAMPLING_SUBSET = {c: SEED_UNDERSAMPLING[c] for c in ("gender", "emotion", "spectacles")}


def test_undersample_is_deterministic_under_seed():
    spec = gender_table()
    a = undersample(spec, factors=SEED_UNDERSAMPLING_SUBSET, seed=7)
    b = undersample(spec, factors=SEED_UNDERSAMPLING_SUBSET, seed=7)
    np.testing.assert_array_equal(a.paths, b.paths)
    one = undersample(spec, factors={"gender": 3}, seed=7)
    other = undersample(spec, factors={"gender": 3}, seed=8)
    assert len(one) == len(other) == 275
    assert list(one.paths) != list(other.paths)


def test_seed_undersampling_constant_matches_the_notes():
    assert SEED_UNDERSAMPLING == {
        "gender": 3, "emotion": 1.5, "pose": 2, "facial_hair": 2.25, "occlusion": 1.75, "spectacles": 2.5,
    }


def test_undersample_errors_name_the_problem():
    spec = gender_table()
    with pytest.raises(ValueError, match="'pose'.*available columns: gender, spectacles, emotion"):
        undersample(spec, factors=SEED_UNDERSAMPLING)
    with pytest.raises(ValueError, match=r"'gender' must be >= 1, got 0.5"):
        undersample(spec, factors={"gender": 0.5})
    with pytest.raises(ValueError, match="not both"):
        undersample(spec, factors={"gender": 2}, target_ratio=1.5)
    with pytest.raises(ValueError, match="target ratio"):
        undersample(spec, target_ratio={"emotion": 0.9})


def test_load_undersampling_config_json_and_yaml(tmp_path):
    spec = gender_table()
    json_path = tmp_path / "under.json"
    json_path.write_text(json.dumps({"factors": {"gender": 3}, "seed": 3}))
    config = load_undersampling_config(json_path)
    assert config == {"factors": {"gender": 3.0}, "seed": 3}
    kept = undersample(spec, **config)
    assert counts(spec, kept)["gender"] == {"female": 100, "male": 175}

    yaml_path = tmp_path / "under.yaml"
    yaml_path.write_text("target_ratio:\n  emotion: 1.5\n")
    config = load_undersampling_config(yaml_path)
    assert config == {"target_ratio": {"emotion": 1.5}}
    assert counts(spec, undersample(spec, **config))["emotion"] == {"neutral": 90, "smile": 90, "surprise": 60}

    scalar = tmp_path / "scalar.yml"
    scalar.write_text("target_ratio: 2\n")
    assert load_undersampling_config(scalar) == {"target_ratio": 2.0}


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"factors": {"gender": "three"}}', r"'gender' must be a finite number, got 'three'"),
        ('{"factors": {"gender": 0.5}}', r"'gender' must be >= 1, got 0.5"),
        ('{"factor": {"gender": 2}}', r"unknown key\(s\) \['factor'\]"),
        ('{"factors": {"gender": 2}, "target_ratio": 2}', "exactly one"),
        ('{"factors": [', "not valid .json"),
    ],
)
def test_load_undersampling_config_errors_name_the_file(tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as err:
        load_undersampling_config(path)
    assert str(path) in str(err.value)
