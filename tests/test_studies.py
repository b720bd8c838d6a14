"""The paper's studies as commands: the modality comparison (every row and column,
frozen branches bit-identical, conclusions from the figures, resumed rows skipped) and the
backbone report cards."""

import json
import re
import shutil

import numpy as np
import pytest

from kerasface.datasets.demo import DemoConfig, generate_demo_dataset
from kerasface.models.branches import branch_models
from kerasface.saving import load_model

TINY_VIT = dict(patch_size=8, dim=16, depth=1, heads=2, mlp_dim=32, dim_head=8, dropout=0.0, emb_dropout=0.0)
STUDY_ARGS = ["--runs", "1", "--epochs", "1", "--backbone", "vit", "--backbone-kwargs", json.dumps(TINY_VIT),
              "--embedding-dim", "16", "--image-size", "16", "--no-tensorboard", "--batch-size", "8",
              "--validation-fraction", "0.2", "--test-fraction", "0.3", "--loss-kwargs", '{"scale": 16}']
ROWS = ["albedo", "normal", "depth", "fused frozen", "fused fine-tuned"]


@pytest.fixture(scope="module")
def renders(tmp_path_factory):
    """Photometric-stereo renders of the demo: lights.json and photometric/, as a user's data."""
    config = DemoConfig(identities=10, images_per_identity=4, image_size=32, seed=3)
    return generate_demo_dataset(tmp_path_factory.mktemp("studies") / "demo", config, progress=False)


@pytest.fixture(scope="module")
def modality_study(renders, tmp_path_factory):
    from kerasface.cli.compare_modalities import main

    out = tmp_path_factory.mktemp("modalities") / "study"
    assert main(["--data", str(renders), "--resume-table", str(out), *STUDY_ARGS]) == 0
    return out


def _weights(model):
    return [np.asarray(w) for w in model.weights]


def test_modality_study_writes_every_row_and_column(modality_study):
    from kerasface.train.compare_modalities import COLUMNS

    table = json.loads((modality_study / "table.json").read_text())
    assert [row["modality"] for row in table["rows"]] == ROWS
    for row in table["rows"]:
        assert "error" not in row and set(COLUMNS) <= set(row)
        for key in ("auc_cosine_last", "auc_euclidean_last", "auc_cosine_best", "auc_euclidean_best"):
            assert 0.0 <= row[key] <= 1.0
    assert table["rows"][0]["paper (cosine / euclidean)"] == "0.9580 / 0.9575"
    text = (modality_study / "table.md").read_text()
    assert all(f"| {name} " in text for name in ROWS) and len(table["conclusions"]) >= 3


def test_frozen_fusion_trains_only_the_fusion(modality_study):
    branches = [load_model(modality_study / f"{m}-run-1" / "model.keras", compile=False) for m in ROWS[:3]]
    sources = [_weights(branch_models(model)[0]) for model in branches]
    frozen = branch_models(load_model(modality_study / "fused-frozen-run-1" / "model.keras", compile=False))
    tuned = branch_models(load_model(modality_study / "fused-fine-tuned-run-1" / "model.keras", compile=False))
    for source, kept, moved in zip(sources, frozen, tuned):
        assert all(np.array_equal(a, b) for a, b in zip(source, _weights(kept)))
        assert not all(np.array_equal(a, b) for a, b in zip(source, _weights(moved)))
    card = json.loads((modality_study / "fused-frozen-run-1" / "report.json").read_text())["card"]
    identities = int(re.search(r"\((\d+) identities", card["layout"]).group(1))
    fusion = 3 * 16 * 16 + 16 + 16  # Dense 48 -> 16 and the batch norm's offset
    assert card["trainable_params"] == fusion + 16 * identities  # and the margin head


def test_resumed_modality_study_skips_finished_rows(modality_study, renders, tmp_path, monkeypatch):
    import kerasface.train.compare as compare
    from kerasface.cli.compare_modalities import main

    out = tmp_path / "study"
    shutil.copytree(modality_study, out)
    shutil.rmtree(out / "fused-fine-tuned-run-1")
    trained = []
    real_train = compare.train
    monkeypatch.setattr(compare, "train", lambda *a, **k: trained.append(a[0].run_id) or real_train(*a, **k))
    assert main(["--data", str(renders), "--resume-table", str(out), *STUDY_ARGS]) == 0
    assert trained == ["fused-fine-tuned-run-1"]
    rows = json.loads((out / "table.json").read_text())["rows"]
    assert [row["modality"] for row in rows] == ROWS and all("error" not in row for row in rows)


def _rows(frozen, tuned_last, tuned_best, singles=(0.9, 0.8, 0.7)):
    rows = [{"modality": m, "run": 1, "auc_cosine_best": a, "auc_euclidean_best": a}
            for m, a in zip(("albedo", "normal", "depth"), singles)]
    rows.append({"modality": "fused frozen", "run": 1, "auc_cosine_best": frozen, "auc_euclidean_best": frozen})
    rows.append({"modality": "fused fine-tuned", "run": 1, "best_epoch": 1, "epochs": 2, "auc_cosine_last": tuned_last,
                 "auc_euclidean_last": tuned_last, "auc_cosine_best": tuned_best, "auc_euclidean_best": tuned_best})
    return rows


def test_conclusions_follow_the_figures():
    from kerasface.train.compare_modalities import conclusions

    disturbed = conclusions(_rows(0.95, 0.90, 0.93))
    assert "held: fine-tuning jointly disturbed" in disturbed[0] and "last epoch 0.9000" in disturbed[0]
    assert "held: fine-tuning jointly disturbed" in disturbed[1] and "best epoch 0.9300" in disturbed[1]
    kept = conclusions(_rows(0.90, 0.94, 0.96, singles=(0.7, 0.8, 0.92)))
    assert all("did not hold" in line for line in kept)
    assert "depth > normal > albedo" in kept[-1] and "(depth) 0.9200" in kept[-2]


def test_backbone_cards_side_by_side_with_the_paper(renders, tmp_path):
    from kerasface.report.card import NOTES_COLUMNS
    from kerasface.train.compare_backbones import NOTES_CARDS, compare_backbones
    from kerasface.train.config import TrainConfig

    config = TrainConfig.from_dict(dict(data=str(renders), epochs=1, image_size=16, crop_fraction=0.6,
                                        tensorboard=False, batch_size=8, validation_fraction=0.2, test_fraction=0.3,
                                        views="crops-vertical", augment=False))
    out = compare_backbones(config, ["vit"], out=tmp_path / "cards", backbone_kwargs={"vit": TINY_VIT},
                            log=lambda *_: None)
    rows = json.loads((out / "cards.json").read_text())["rows"]
    assert [row["source"] for row in rows] == ["measured", "paper"] and rows[1] == {"source": "paper",
                                                                                    **NOTES_CARDS["vit"]}
    measured = rows[0]
    assert all(measured[c] not in ("", "-") for c in NOTES_COLUMNS)
    assert measured["params"].startswith("trainable ") and "non-trainable 0 (0 B)" in measured["params"]
    for split in ("train", "val", "test"):
        assert f"{split} " in measured["results"]
    assert "bin-acc" in measured["results"] and "AUC" in measured["results"] and "auc_gender" not in measured["results"]
    assert "## vit" in (out / "cards.md").read_text()


def test_a_row_continues_from_its_checkpoint_and_one_without_starts_again(tmp_path, monkeypatch):
    import kerasface.train.compare as compare
    from kerasface.train.config import TrainConfig

    calls = []

    def fake_train(config=None, *, resume=None, log=print):
        calls.append(("resume", resume.name) if resume else ("new", config.run_id))
        run_dir = resume or tmp_path / config.run_id
        run_dir.mkdir(exist_ok=True)
        (run_dir / "report.json").write_text(json.dumps({"card": {"run_id": run_dir.name}}))
        return run_dir

    monkeypatch.setattr(compare, "train", fake_train)
    config = TrainConfig.from_dict({"epochs": 3})
    for name, state in (("interrupted", {"epoch": 2}), ("unsaved", None), ("finished", {"epoch": 3})):
        (tmp_path / name / "checkpoints").mkdir(parents=True)
        (tmp_path / name / "config.json").write_text("{}")
        if state:
            (tmp_path / name / "checkpoints" / "state.json").write_text(json.dumps(state))
    (tmp_path / "finished" / "report.json").write_text(json.dumps({"card": {}}))
    (tmp_path / "unsaved" / "stale.txt").write_text("left by a killed run")
    names = ["finished", "interrupted", "unsaved", "fresh"]
    done = compare.run_trainings(tmp_path, [(name, config) for name in names], log=lambda *_: None)
    assert calls == [("resume", "interrupted"), ("new", "unsaved"), ("new", "fresh")]
    assert [d.name for d in done] == names and all(d.error is None for d in done)
    assert not (tmp_path / "unsaved" / "stale.txt").exists()
