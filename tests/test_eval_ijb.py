"""IJB-C 1:1 and 1:N on a tiny set in the dataset's own layout, checked against insightface's
formulas (ijb_11.py, ijb_1n.py) written out in float64 NumPy; resumable chunked features; bad
layouts named; provenance of the figures."""

import json
import math
import shutil

import cv2
import keras
import numpy as np
import pytest
from sklearn.metrics import auc, roc_curve
from sklearn.preprocessing import normalize

from kerasface.cli import evaluate
from kerasface.datasets.demo import DemoConfig, render_face, sample_identity, sample_image
from kerasface.errors import BadInputError
from kerasface.eval.embeddings import EmbeddingModel, keras_embedding_model
from kerasface.eval.ijb import evaluate_ijb, load_ijb
from kerasface.eval.provenance import comparable
from kerasface.faces.align import template
from kerasface.models import ImagePreprocessing
from kerasface.models.preprocessing import set_input_preprocessing

SIZE = 32
SUBJECTS = 8
TEMPLATES_PER_SUBJECT = 4
CROP_SHAPE = (40, 44)
CONFIG = DemoConfig(identities=SUBJECTS, image_size=SIZE, photometric=False, seed=3)


def tiny_model():
    images = keras.Input((SIZE, SIZE, 3))
    x = ImagePreprocessing("tf", name="preprocessing")(images)
    x = keras.layers.Conv2D(6, 3, strides=2, activation="relu", kernel_initializer=keras.initializers.GlorotUniform(1))(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(8, kernel_initializer=keras.initializers.GlorotUniform(2))(x)
    return set_input_preprocessing(keras.Model(images, x, name="tiny"), resize_mode="stretch", alignment="arcface")


@pytest.fixture(scope="module")
def ijb(tmp_path_factory):
    """IJBC/: 8 subjects x 4 templates (1 gallery, 3 probes) of 1-2 media of 1-2 frames. Each
    frame is a demo face pasted at an offset into a larger crop, its 5 points listed there."""
    root = tmp_path_factory.mktemp("ijb") / "IJBC"
    (root / "meta").mkdir(parents=True)
    (root / "loose_crop").mkdir()
    rng = np.random.default_rng(0)
    points, media_lines, faces, subjects_of = [], [], [], {}
    gallery = {1: [], 2: []}
    probes = []
    frame = 0
    for subject in range(SUBJECTS):
        identity = sample_identity(CONFIG, subject)
        for t in range(TEMPLATES_PER_SUBJECT):
            tid = 1 + subject * TEMPLATES_PER_SUBJECT + t
            subjects_of[tid] = 100 + subject
            rows = []
            for m in range(1 + (subject + t) % 2):
                mid = 500 + subject * 3 + (t + m) % 3
                for _ in range(1 + (m + t + subject) % 2):
                    face = (np.clip(render_face(identity, sample_image(CONFIG, identity, frame)), 0, 1) * 255).round()
                    face = face.astype(np.uint8)
                    dy, dx = rng.integers(0, CROP_SHAPE[0] - SIZE + 1), rng.integers(0, CROP_SHAPE[1] - SIZE + 1)
                    crop = np.zeros((*CROP_SHAPE, 3), np.uint8)
                    crop[dy:dy + SIZE, dx:dx + SIZE] = face
                    name = f"{frame + 1}.png"
                    assert cv2.imwrite(str(root / "loose_crop" / name), crop[..., ::-1])
                    marks = template(SIZE) + [dx, dy]
                    score = rng.uniform(0.5, 1.0)
                    points.append(" ".join([name, *(f"{v:.4f}" for v in marks.ravel()), f"{score:.6f}"]))
                    media_lines.append(f"{name} {tid} {mid}")
                    faces.append(face)
                    rows.append(f"{tid},{100 + subject},{name}")
                    frame += 1
            if t == 0:
                gallery[1 if subject < SUBJECTS // 2 else 2].extend(rows)
            else:
                probes.extend(rows)
    (root / "meta" / "ijbc_name_5pts_score.txt").write_text("\n".join(points) + "\n")
    (root / "meta" / "ijbc_face_tid_mid.txt").write_text("\n".join(media_lines) + "\n")
    tids = sorted(subjects_of)
    pairs = [f"{a} {b} {int(subjects_of[a] == subjects_of[b])}" for i, a in enumerate(tids) for b in tids[i + 1:]]
    (root / "meta" / "ijbc_template_pair_label.txt").write_text("\n".join(pairs) + "\n")
    header = "TEMPLATE_ID,SUBJECT_ID,FILENAME"
    for g in (1, 2):
        (root / "meta" / f"ijbc_1N_gallery_G{g}.csv").write_text("\n".join([header, *gallery[g]]) + "\n")
    (root / "meta" / "ijbc_1N_probe_mixed.csv").write_text("\n".join([header, *probes]) + "\n")
    return root, np.stack(faces)


@pytest.fixture(scope="module")
def model():
    return keras_embedding_model(tiny_model())


# insightface's formulas, float64

def insightface_templates(feats, templates, medias):
    unique_templates = np.unique(templates)
    template_feats = np.zeros((len(unique_templates), feats.shape[1]))
    for count, uqt in enumerate(unique_templates):
        (ind_t,) = np.where(templates == uqt)
        face_feats, face_medias = feats[ind_t], medias[ind_t]
        unique_medias, counts = np.unique(face_medias, return_counts=True)
        media_feats = []
        for u, ct in zip(unique_medias, counts):
            (ind_m,) = np.where(face_medias == u)
            media_feats += [face_feats[ind_m]] if ct == 1 else [np.mean(face_feats[ind_m], axis=0, keepdims=True)]
        template_feats[count] = np.sum(np.array(media_feats), axis=0)
    return normalize(template_feats), unique_templates


def insightface_11(template_feats, unique_templates, p1, p2, label):
    template2id = np.zeros((max(unique_templates) + 1, 1), dtype=int)
    for count, uqt in enumerate(unique_templates):
        template2id[uqt] = count
    score = np.sum(template_feats[template2id[p1]] * template_feats[template2id[p2]], -1).flatten()
    fpr, tpr, _ = roc_curve(label, score)
    roc_auc = auc(fpr, tpr)
    fpr, tpr = np.flipud(fpr), np.flipud(tpr)
    tars = []
    for x in [10**-6, 10**-5, 10**-4, 10**-3, 10**-2, 10**-1]:
        _, min_index = min(list(zip(abs(fpr - x), range(len(fpr)))))
        tars.append(tpr[min_index])
    return tars, roc_auc


def insightface_1n(query_feats, gallery_feats, mask):
    query_num, gallery_num = query_feats.shape[0], gallery_feats.shape[0]
    similarity = np.dot(query_feats, gallery_feats.T)
    top_inds = np.argsort(-similarity)
    tops = [sum(mask[i] in top_inds[i, :k] for i in range(query_num)) / query_num for k in (1, 5, 10)]
    required = [math.ceil(query_num * x) for x in (0.01, 0.1)]
    pos_sims = similarity[np.arange(query_num), mask].copy()
    similarity[np.arange(query_num), mask] = -2.0
    neg_sims = np.sort(similarity[similarity > -2.0])[::-1]
    assert len(neg_sims) == query_num * gallery_num - query_num
    return tops, [np.sum(pos_sims > neg_sims[k - 1]) / query_num for k in required]


def read_1n(path):
    table = np.loadtxt(path, dtype=str, skiprows=1, delimiter=",")
    templates, first = np.unique(table[:, 0].astype(int), return_index=True)
    return templates, table[first, 1].astype(int)


def features_of(folder):
    return np.concatenate([np.load(p) for p in sorted(folder.glob("chunk-*.npy"))]).astype(np.float64)


def test_figures_equal_insightface_formulas_on_the_same_embeddings(ijb, model, tmp_path):
    root, faces = ijb
    data = load_ijb(root)
    assert data.name == "IJBC" and len(data.crops) == len(faces)
    result = evaluate_ijb(model, data, tmp_path / "features", flip=True, batch_size=8, chunk_size=16,
                          progress=False)
    feats = features_of(tmp_path / "features")
    direct = model(faces.astype(np.float32)) + model(np.ascontiguousarray(faces[:, :, ::-1]).astype(np.float32))
    np.testing.assert_allclose(feats, direct, rtol=1e-4, atol=1e-4)

    weighted = feats * data.detector_scores[:, None]
    template_feats, unique_templates = insightface_templates(weighted, data.templates, data.medias)
    pairs = np.loadtxt(root / "meta" / "ijbc_template_pair_label.txt", dtype=int)
    tars, roc_auc = insightface_11(template_feats, unique_templates, *pairs.T)
    figures = result.verification
    assert list(figures.tar_at_far) == ["1e-6", "1e-5", "1e-4", "1e-3", "1e-2", "1e-1"]
    assert list(figures.tar_at_far.values()) == pytest.approx(tars, abs=1e-12)
    assert figures.auc == pytest.approx(roc_auc, abs=1e-12) and 0.5 < roc_auc < 1
    assert figures.num_pairs == len(pairs) and figures.num_templates == SUBJECTS * TEMPLATES_PER_SUBJECT
    assert len(set(tars)) > 2

    def rows_of(templates):
        return np.searchsorted(unique_templates, templates)

    g1, s1 = read_1n(root / "meta" / "ijbc_1N_gallery_G1.csv")
    g2, s2 = read_1n(root / "meta" / "ijbc_1N_gallery_G2.csv")
    probes, probe_subjects = read_1n(root / "meta" / "ijbc_1N_probe_mixed.csv")
    gallery_templates, first = np.unique(np.concatenate([g1, g2]), return_index=True)
    gallery_subjects = np.concatenate([s1, s2])[first]
    mask = [int(np.flatnonzero(gallery_subjects == s)[0]) for s in probe_subjects]
    tops, tpirs = insightface_1n(template_feats[rows_of(probes)], template_feats[rows_of(gallery_templates)], mask)
    joined = result.identification["insightface"]
    assert [joined["rank1"], joined["rank5"], joined["rank10"]] == pytest.approx(tops, abs=1e-12)
    assert list(joined["tpir_at_fpir"].values()) == pytest.approx(tpirs, abs=1e-12)
    assert 0 < tops[0] < 1 and joined["num_probes"] == SUBJECTS * (TEMPLATES_PER_SUBJECT - 1)

    mated = np.isin(probe_subjects, s1)
    similarity = template_feats[rows_of(probes[mated])] @ template_feats[rows_of(g1)].T
    best = s1[np.argmax(similarity, axis=1)]
    g1_figures = result.identification["galleries"]["G1"]
    assert g1_figures["rank1"] == pytest.approx(np.mean(best == probe_subjects[mated]), abs=1e-12)
    assert g1_figures["num_mated"] == mated.sum() and g1_figures["num_non_mated"] == (~mated).sum()
    assert list(g1_figures["tpir_at_fpir"]) == ["1e-1"]
    mean = result.identification["galleries"]["mean"]
    assert mean["rank1"] == pytest.approx((g1_figures["rank1"] + result.identification["galleries"]["G2"]["rank1"]) / 2)

    plain = evaluate_ijb(model, data, tmp_path / "plain", detector_score=False, batch_size=8, chunk_size=16,
                         progress=False)
    unweighted, _ = insightface_templates(features_of(tmp_path / "plain"), data.templates, data.medias)
    assert list(plain.verification.tar_at_far.values()) == pytest.approx(
        insightface_11(unweighted, unique_templates, *pairs.T)[0], abs=1e-12)


class Counting(EmbeddingModel):
    """The model counting its batches, failing at batch ``fail_at`` (1-based) when given."""

    def __init__(self, model, fail_at=None):
        super().__init__(model.name, model.image_size, model.resize_mode, model.predict)
        self.batches, self.fail_at = 0, fail_at

    def __call__(self, images):
        self.batches += 1
        if self.batches == self.fail_at:
            raise RuntimeError("interrupted")
        return super().__call__(images)


def test_interrupted_extraction_resumes_at_the_first_missing_chunk(ijb, model, tmp_path):
    root, faces = ijb
    data = load_ijb(root)
    chunk, batch = 16, 8
    chunks = math.ceil(len(faces) / chunk)
    whole = evaluate_ijb(model, data, tmp_path / "whole", batch_size=batch, chunk_size=chunk, progress=False)

    folder = tmp_path / "resumed"
    with pytest.raises(RuntimeError, match="interrupted"):
        evaluate_ijb(Counting(model, fail_at=5), data, folder, batch_size=batch, chunk_size=chunk, progress=False)
    assert sorted(p.name for p in folder.iterdir()) == ["chunk-000000.npy", "chunk-000001.npy", "manifest.json"]
    counting = Counting(model)
    resumed = evaluate_ijb(counting, data, folder, batch_size=batch, chunk_size=chunk, progress=False)
    remaining = len(faces) - 2 * chunk
    assert counting.batches == sum(math.ceil(min(chunk, remaining - k) / batch) for k in range(0, remaining, chunk))
    assert len(list(folder.glob("chunk-*.npy"))) == chunks
    assert resumed.to_dict() == whole.to_dict()
    np.testing.assert_array_equal(features_of(folder), features_of(tmp_path / "whole"))

    again = Counting(model)
    assert evaluate_ijb(again, data, folder, batch_size=batch, chunk_size=chunk, progress=False).to_dict() == whole.to_dict()
    assert again.batches == 0
    with pytest.raises(BadInputError, match=r"resumed: holds features of another run \(flip False there, True now"):
        evaluate_ijb(model, data, folder, flip=True, batch_size=batch, chunk_size=chunk, progress=False)


def _copy(ijb, tmp_path):
    target = tmp_path / "IJBC"
    shutil.copytree(ijb[0], target)
    return target


def test_bad_layouts_name_the_file(ijb, model, tmp_path):
    root = _copy(ijb, tmp_path)
    (root / "loose_crop" / "20.png").write_bytes(b"not an image")
    with pytest.raises(BadInputError, match=r"loose_crop/20.png: does not decode"):
        evaluate_ijb(model, load_ijb(root), tmp_path / "features", batch_size=8, chunk_size=16, progress=False)
    assert sorted(p.name for p in (tmp_path / "features").iterdir()) == ["chunk-000000.npy", "manifest.json"]
    (root / "loose_crop" / "3.png").unlink()
    with pytest.raises(BadInputError, match=r"ijbc_name_5pts_score.txt, line 3: crop .*loose_crop/3.png not found"):
        load_ijb(root)
    shutil.copy(ijb[0] / "loose_crop" / "3.png", root / "loose_crop" / "3.png")
    (root / "meta" / "ijbc_1N_gallery_G2.csv").unlink()
    with pytest.raises(BadInputError, match=r"meta/ijbc_1N_gallery_G2.csv: missing \(IJB 1:N meta file\)"):
        evaluate_ijb(None, load_ijb(root), tmp_path / "never")
    assert not (tmp_path / "never").exists()
    lines = (root / "meta" / "ijbc_face_tid_mid.txt").read_text().splitlines()
    lines[4] = lines[4].replace(".png", ".jpg")
    (root / "meta" / "ijbc_face_tid_mid.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(BadInputError, match=r"ijbc_face_tid_mid.txt, line 5: crop '5.jpg', but line 5 of .*"
                                            r"ijbc_name_5pts_score.txt is '5.png'"):
        load_ijb(root)
    (root / "meta" / "ijbc_name_5pts_score.txt").unlink()
    with pytest.raises(BadInputError, match=r"meta/ijbc_name_5pts_score.txt: missing"):
        load_ijb(root)
    (root / "meta" / "ijbc_face_tid_mid.txt").unlink()
    with pytest.raises(BadInputError, match="neither ijbc_face_tid_mid.txt nor ijbb_face_tid_mid.txt found"):
        load_ijb(root)


def test_cli_writes_table_json_with_provenance_and_roc(ijb, tmp_path, capsys):
    path = tmp_path / "tiny.keras"
    tiny_model().save(path)
    out = tmp_path / "eval" / "ijb.json"
    args = ["--model", str(path), "--ijb", str(ijb[0]), "--out", str(out), "--batch-size", "8",
            "--ijb-chunk", "32", "--quiet"]
    assert evaluate.main(args) == 0
    printed = capsys.readouterr().out
    assert "| Methods" in printed and "| 1e-06 " in printed and "| tiny-IJBC " in printed and "rank-1" in printed
    report = json.loads(out.read_text())
    record = report["provenance"]
    assert record["flip"] is False and record["detector_score"] is True and record["alignment"] == "arcface"
    assert record["preprocessing"] == {"image_size": [SIZE, SIZE], "resize_mode": "stretch", "value_range": "tf",
                                       "alignment": "arcface", "channel_order": "RGB"}
    assert set(record["files"]) == {f"IJBC/{name}" for name in (
        "ijbc_name_5pts_score.txt", "ijbc_face_tid_mid.txt", "ijbc_template_pair_label.txt",
        "ijbc_1N_gallery_G1.csv", "ijbc_1N_gallery_G2.csv", "ijbc_1N_probe_mixed.csv")}
    import hashlib

    pairs_file = ijb[0] / "meta" / "ijbc_template_pair_label.txt"
    assert record["files"]["IJBC/ijbc_template_pair_label.txt"]["sha256"] == hashlib.sha256(
        pairs_file.read_bytes()).hexdigest()
    assert (tmp_path / "eval" / "ijb.roc.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in (tmp_path / "eval" / "ijb.features").iterdir())[-1] == "manifest.json"

    flipped = tmp_path / "eval" / "flip.json"
    assert evaluate.main([*args[:5], str(flipped), *args[6:], "--flip", "--ijb-features", str(tmp_path / "f2")]) == 0
    same, reasons = comparable(report, report)
    assert same and reasons == []
    same, reasons = comparable(report, json.loads(flipped.read_text()))
    assert not same and reasons == ["flip: False against True"]

    with pytest.raises(SystemExit) as stop:
        evaluate.main(["--model", str(path), "--out", str(tmp_path / "none.json")])
    assert stop.value.code == 2 and "give either --pairs or --ijb" in capsys.readouterr().err

    other = _copy(ijb, tmp_path)
    with open(other / "meta" / "ijbc_template_pair_label.txt", "a") as handle:
        handle.write("1 999 0\n")
    assert evaluate.main([*args[:3], str(other), "--out", str(tmp_path / "bad.json"), *args[6:]]) == 1
    assert "ijbc_template_pair_label.txt: template 999 has no crop" in capsys.readouterr().err
    assert not (tmp_path / "bad.json").exists() and not (tmp_path / "bad.features").exists()


def test_comparable_names_each_difference():
    def record(sha="a" * 64, **changes):
        base = {"protocol": "p", "kerasface_version": "1", "flip": False, "resize_mode": "stretch",
                "alignment": "arcface", "image_size": [112, 112],
                "files": {"lfw": {"path": "lfw/pairs.txt", "sha256": sha}}}
        return {"provenance": {**base, **changes}}

    assert comparable(record(), record(image_size=[96, 96])) == (True, [])
    same, reasons = comparable(record(), record(sha="b" * 64, kerasface_version="2",
                                                files={"cfp": {"path": "cfp.bin", "sha256": "c" * 64}}))
    assert not same and reasons == ["kerasface_version: '1' against '2'", "cfp: evaluated in the second only",
                                    "lfw: evaluated in the first only"]
    same, reasons = comparable(record(), record(sha="b" * 64))
    assert reasons == ["lfw: different files (lfw/pairs.txt sha256 aaaaaaaaaaaa, lfw/pairs.txt sha256 bbbbbbbbbbbb)"]
    assert comparable({"sets": {}}, record()) == (False, ["no provenance record in the first"])
