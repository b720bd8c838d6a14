"""The synthetic demo dataset: determinism, on-disk format, Lambertian photometric renders,
visible attributes, no colour shortcut to identity, configured imbalance, safe writes."""

import csv
import dataclasses
import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from kerasface.datasets import demo
from kerasface.datasets.demo import (
    DEMO_LABEL_COLUMNS,
    DemoConfig,
    ensure_demo_dataset,
    generate_demo_dataset,
    photometric_lights,
    render_face,
    render_photometric,
    render_surface,
    sample_identity,
    sample_image,
)
from kerasface.data.spec import encode_labels, label_names

SMALL = DemoConfig(identities=6, images_per_identity=4, image_size=64)
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    return generate_demo_dataset(tmp_path_factory.mktemp("demo") / "data", SMALL, progress=False)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _rows(root: Path) -> list[dict[str, str]]:
    with open(root / "attributes.csv", newline="") as f:
        return list(csv.DictReader(f))


def _still(image, **changes):
    """The image without pose, noise and blur (canonical u, v map linearly to pixels)."""
    fixed = dict(pose="frontal", yaw=0.0, roll=0.0, shift=(0.0, 0.0), scale=1.0, noise_std=0.0, blur_sigma=0.0)
    return dataclasses.replace(image, **{**fixed, **changes})


def _row(v: float, size: int) -> float:
    return (v + 1.0) * size / 2 - 0.5


def test_same_seed_gives_byte_identical_files(small_dataset, tmp_path):
    again = generate_demo_dataset(tmp_path / "again", SMALL, progress=False)
    files = _files(small_dataset)
    assert len(files) == 24 + 24 * 4 + 3
    assert _files(again) == files


def test_other_seed_changes_the_images(small_dataset, tmp_path):
    other = generate_demo_dataset(tmp_path / "other", dataclasses.replace(SMALL, seed=1), progress=False)
    ours, theirs = _files(small_dataset), _files(other)
    assert sorted(ours) == sorted(theirs)
    images = [name for name in ours if name.startswith("images/")]
    assert all(ours[name] != theirs[name] for name in images)


def test_an_identity_renders_the_same_whatever_the_identity_count(small_dataset, tmp_path):
    fewer = generate_demo_dataset(tmp_path / "fewer", dataclasses.replace(SMALL, identities=3), progress=False)
    for name in ("images/id_002/3.png", "photometric/id_002/3/light_1.png"):
        assert (fewer / name).read_bytes() == (small_dataset / name).read_bytes()


def test_csv_lists_every_image_with_valid_attributes(small_dataset):
    rows = _rows(small_dataset)
    with open(small_dataset / "attributes.csv", newline="") as f:
        assert f.readline().strip() == "path,identity,gender,emotion,pose,facial_hair,occlusion,spectacles"
    assert len(rows) == 24
    assert [r["path"] for r in rows[:5]] == [f"images/id_000/{n}.png" for n in range(4)] + ["images/id_001/0.png"]
    for row in rows:
        assert row["path"].split("/")[1] == row["identity"]
        for column, vocab in DEMO_LABEL_COLUMNS.items():
            assert row[column] in vocab, (row, column)
        image = cv2.imread(str(small_dataset / row["path"]), cv2.IMREAD_UNCHANGED)
        assert image.shape == (64, 64, 3) and image.dtype == np.uint8
        n = Path(row["path"]).stem
        for k in range(4):
            light_path = small_dataset / "photometric" / row["identity"] / n / f"light_{k}.png"
            light = cv2.imread(str(light_path), cv2.IMREAD_UNCHANGED)
            assert light.shape == (64, 64), (row, k)
        assert not (small_dataset / "photometric" / row["identity"] / n / "light_4.png").exists()
    by_identity = {}
    for row in rows:
        by_identity.setdefault(row["identity"], set()).add(row["gender"])
        if row["facial_hair"] == "1":
            assert row["gender"] == "male"
    assert all(len(genders) == 1 for genders in by_identity.values())
    assert sorted(by_identity) == [f"id_{i:03d}" for i in range(6)]
    assert encode_labels(DEMO_LABEL_COLUMNS, rows).shape == (24, 10)
    assert len(label_names(DEMO_LABEL_COLUMNS)) == 10

    manifest = json.loads((small_dataset / "manifest.json").read_text())
    assert manifest["config"] == SMALL.to_dict() and DemoConfig(**manifest["config"]) == SMALL
    assert manifest["counts"]["images"] == 24 and manifest["counts"]["photometric_images"] == 96
    genders = [next(iter(g)) for g in by_identity.values()]
    assert manifest["counts"]["identities_by_gender"] == {g: genders.count(g) for g in ("female", "male")}
    for column in DEMO_LABEL_COLUMNS:
        assert manifest["counts"][column] == {v: sum(r[column] == v for r in rows) for v in DEMO_LABEL_COLUMNS[column]}


def test_rows_match_the_sampled_parameters(small_dataset):
    rows = _rows(small_dataset)
    identity = sample_identity(SMALL, 4)
    image = sample_image(SMALL, identity, 2)
    row = next(r for r in rows if r["path"] == "images/id_004/2.png")
    assert row == {"path": "images/id_004/2.png", "identity": "id_004", **image.attributes(identity.gender)}


def test_lights_are_unit_vectors_towards_the_camera_and_well_spread(small_dataset):
    lights = np.array(json.loads((small_dataset / "lights.json").read_text())["lights"])
    assert lights.shape == (4, 3)
    np.testing.assert_allclose(np.linalg.norm(lights, axis=1), 1.0, atol=1e-12)
    assert np.all(lights[:, 2] > 0.5)
    assert np.linalg.cond(lights) < 2.0
    np.testing.assert_allclose(lights, photometric_lights(4))


def test_photometric_renders_are_lambertian_and_agree_with_the_rgb_image():
    config = DemoConfig(image_size=64, spectacles_probability=1.0)
    identity = sample_identity(config, 1)
    image = dataclasses.replace(sample_image(config, identity, 0), noise_std=0.0, blur_sigma=0.0)
    surface = render_surface(identity, image)
    lights = photometric_lights(4)
    renders = render_photometric(identity, image, lights).astype(np.float64)

    shading = surface.normals.astype(np.float64) @ lights.T
    fit = surface.face_mask & np.all(shading > 0.05, axis=-1)
    assert fit.sum() > 0.3 * surface.face_mask.sum()
    observed = renders[:, fit] - image.ambient
    solved, *_ = np.linalg.lstsq(lights, observed, rcond=None)
    gray = surface.albedo.astype(np.float64) @ [0.299, 0.587, 0.114]
    expected = image.gain * gray[fit] * surface.normals[fit].T.astype(np.float64)
    np.testing.assert_allclose(solved, expected, atol=2e-5)
    assert np.abs(lights @ solved - observed).max() < 2e-5

    other_light = np.array([0.3, -0.2, 0.93]) / np.linalg.norm([0.3, -0.2, 0.93])
    rgb = render_face(identity, image, light=other_light).astype(np.float64)
    lit = surface.normals[fit] @ other_light > 0.05
    luminance = rgb[fit] @ [0.299, 0.587, 0.114]
    np.testing.assert_allclose(luminance[lit], other_light @ solved[:, lit] + image.ambient, atol=2e-5)


def test_photometric_pngs_fit_one_albedo_normal_per_pixel(small_dataset):
    """On lit face pixels the 4 light images fit I_k = l_k . g (g = albedo * normal) up to the
    image noise; swapping in one light image of another image breaks the fit."""
    lights = np.array(json.loads((small_dataset / "lights.json").read_text())["lights"])

    def load(identity, n):
        folder = small_dataset / "photometric" / f"id_{identity:03d}" / str(n)
        return np.stack([cv2.imread(str(folder / f"light_{k}.png"), 0) / 255.0 for k in range(4)]) - SMALL.ambient

    def residual(stack, face):
        observed = stack[:, face & np.all(stack > 0.1, axis=0)]
        solved, *_ = np.linalg.lstsq(lights, observed, rcond=None)
        return np.median(np.sqrt(np.mean((lights @ solved - observed) ** 2, axis=0)))

    ratios = []
    for i in range(3):
        identity = sample_identity(SMALL, i)
        for n in range(2):
            image = sample_image(SMALL, identity, n)
            face = render_surface(identity, image).face_mask
            stack = load(i, n)
            clean = residual(stack, face)
            assert clean < 0.5 * image.noise_std + 0.004, (i, n)
            stack[1] = load(i, n + 1)[1]
            ratios.append(residual(stack, face) / max(clean, 1e-3))
    assert np.median(ratios) > 2.5, ratios


def _changed(a, b):
    return np.abs(a - b).max(axis=-1) > 1.0 / 255


def test_attributes_change_the_image_where_they_belong():
    config = DemoConfig(image_size=112, male_fraction=1.0, facial_hair_fraction_of_males=1.0)
    identity = sample_identity(config, 0)
    base = _still(
        sample_image(config, identity, 0), emotion="neutral", spectacles=False, occlusion=False, facial_hair=False
    )
    plain = render_face(identity, base)
    rows = np.arange(112)[:, None] * np.ones((1, 112))

    glasses = _changed(render_face(identity, dataclasses.replace(base, spectacles=True)), plain)
    top, bottom = _row(identity.eye_y - 0.3, 112), _row(identity.eye_y + 0.3, 112)
    assert glasses.sum() > 150
    assert np.all((rows[glasses] > top) & (rows[glasses] < bottom))

    beard = _changed(render_face(identity, dataclasses.replace(base, facial_hair=True)), plain)
    assert beard.sum() > 100
    assert rows[beard].min() > _row(identity.mouth_y - 0.3, 112)

    happy = render_face(identity, dataclasses.replace(base, emotion="happy"))
    sad = render_face(identity, dataclasses.replace(base, emotion="sad"))
    mouth_top, mouth_bottom = _row(identity.mouth_y - 0.12, 112), _row(identity.mouth_y + 0.12, 112)
    mouth = (rows > mouth_top) & (rows < mouth_bottom)
    assert _changed(happy, sad)[mouth].sum() > 40
    # a sad face raises the inner ends of its brows (up to about 0.45 above their line): nothing higher changes
    assert not _changed(happy, sad)[rows < _row(identity.eye_y - identity.brow_gap - 0.6, 112)].any()

    covered = _changed(render_face(identity, dataclasses.replace(base, occlusion=True)), plain)
    surface = render_surface(identity, base)
    share = (covered & surface.face_mask).sum() / surface.face_mask.sum()
    assert 0.03 < share < 0.6
    assert covered.sum() < 0.5 * covered.size


def test_pose_turns_the_nose_left_or_right():
    config = DemoConfig(image_size=112)
    identity = sample_identity(config, 2)
    image = sample_image(config, identity, 0)

    def nose_column(pose, yaw_degrees):
        posed = _still(image, occlusion=False, spectacles=False, pose=pose, yaw=np.radians(yaw_degrees))
        height = render_surface(identity, posed).height
        return np.unravel_index(np.argmax(height), height.shape)[1]

    left, frontal, right = nose_column("left", -26.0), nose_column("frontal", 0.0), nose_column("right", 26.0)
    assert left + 4 <= frontal <= right - 4
    assert abs(frontal - 55.5) <= 2


def test_mean_colour_does_not_tell_identities_apart():
    config = DemoConfig(image_size=32, seed=3)
    identities, per_identity = 20, 10
    means, labels = [], []
    for i in range(identities):
        identity = sample_identity(config, i)
        for n in range(per_identity):
            means.append(render_face(identity, sample_image(config, identity, n)).reshape(-1, 3).mean(0))
            labels.append(i)
    means, labels = np.array(means, np.float64), np.array(labels)

    correct = 0
    for j in range(len(means)):
        others = np.arange(len(means)) != j
        centroids = np.array([means[others & (labels == c)].mean(0) for c in range(identities)])
        correct += np.argmin(((centroids - means[j]) ** 2).sum(1)) == labels[j]
    assert correct / len(means) < 0.2

    centroids = np.array([means[labels == c].mean(0) for c in range(identities)])
    between = ((centroids - means.mean(0)) ** 2).sum(1).mean()
    within = np.mean([((means[labels == c] - centroids[c]) ** 2).sum(1).mean() for c in range(identities)])
    assert between / within < 2.0 / per_identity


def test_skin_tone_and_hair_colour_belong_to_the_identity():
    """As a person's do: they vary less between one identity's images than between identities."""
    config = DemoConfig(image_size=32, seed=3)
    identities, per_identity = 20, 10
    for field in ("skin_colour", "hair_colour"):
        colours = np.array([[getattr(sample_image(config, sample_identity(config, i), n), field)
                             for n in range(per_identity)] for i in range(identities)], np.float64)
        centroids = colours.mean(1)
        within = ((colours - centroids[:, None]) ** 2).sum(-1).mean()
        between = ((centroids - centroids.mean(0)) ** 2).sum(-1).mean()
        assert between > 4 * within, field


def test_gender_and_attribute_rates_follow_the_config():
    config = DemoConfig(identities=4000)
    identities = [sample_identity(config, i) for i in range(4000)]
    males = [p for p in identities if p.gender == "male"]
    assert len(males) / len(identities) == pytest.approx(5.25 / 6.25, abs=0.02)
    assert all(p.gender == "male" for p in identities if p.facial_hair)
    assert sum(p.facial_hair for p in males) / len(males) == pytest.approx(0.3, abs=0.03)

    images = [sample_image(config, p, n) for p in identities[:300] for n in range(20)]
    for column, probabilities in (("emotion", config.emotion_probabilities), ("pose", config.pose_probabilities)):
        for value, probability in probabilities.items():
            share = np.mean([getattr(q, column) == value for q in images])
            assert share == pytest.approx(probability, abs=0.025), (column, value)
    assert np.mean([q.occlusion for q in images]) == pytest.approx(0.12, abs=0.02)
    assert np.mean([q.spectacles for q in images]) == pytest.approx(0.20, abs=0.02)

    balanced = DemoConfig(male_fraction=0.5)
    share = np.mean([sample_identity(balanced, i).gender == "male" for i in range(2000)])
    assert share == pytest.approx(0.5, abs=0.04)


def test_config_rejects_bad_probabilities():
    with pytest.raises(ValueError, match="emotion_probabilities"):
        DemoConfig(emotion_probabilities={"happy": 0.5, "neutral": 0.6, "sad": 0.1})
    with pytest.raises(ValueError, match="pose_probabilities"):
        DemoConfig(pose_probabilities={"frontal": 1.0})
    with pytest.raises(ValueError, match="num_lights"):
        DemoConfig(num_lights=2)
    assert DemoConfig(num_lights=2, photometric=False).num_lights == 2


def test_parts_are_rendered_whole_inside_their_windows(monkeypatch):
    config = DemoConfig(
        image_size=64, male_fraction=1.0, facial_hair_fraction_of_males=1.0,
        spectacles_probability=1.0, occlusion_probability=1.0,
    )
    cases = []
    for i in range(3):
        identity = sample_identity(config, i)
        for n in range(2):
            cases.append((identity, dataclasses.replace(sample_image(config, identity, n), pose="left", yaw=-0.5)))
    windowed = [render_surface(identity, image) for identity, image in cases]
    monkeypatch.setattr(demo, "_window", lambda identity, image, u, v: (slice(None), slice(None)))
    for (identity, image), part in zip(cases, windowed):
        whole = render_surface(identity, image)
        assert np.abs(part.albedo - whole.albedo).max() < 1e-3
        assert np.abs(part.normals - whole.normals).max() < 1e-3


def test_refuses_to_overwrite(tmp_path):
    tiny = DemoConfig(identities=1, images_per_identity=1, image_size=32)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(FileExistsError, match="foreign"):
            generate_demo_dataset(foreign, tiny, overwrite=overwrite, progress=False)
    assert [p.name for p in foreign.iterdir()] == ["keep.txt"]

    target = generate_demo_dataset(tmp_path / "data", tiny, progress=False)
    with pytest.raises(FileExistsError, match="overwrite"):
        generate_demo_dataset(target, dataclasses.replace(tiny, seed=5), progress=False)
    generate_demo_dataset(target, dataclasses.replace(tiny, seed=5), overwrite=True, progress=False)
    assert json.loads((target / "manifest.json").read_text())["seed"] == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "foreign"]

    empty = tmp_path / "empty"
    empty.mkdir()
    assert (generate_demo_dataset(empty, tiny, progress=False) / "manifest.json").exists()


def test_writes_atomically(tmp_path, monkeypatch):
    tiny = DemoConfig(identities=2, images_per_identity=2, image_size=32)
    out = generate_demo_dataset(tmp_path / "nested" / "data", tiny, progress=False)
    assert [p.name for p in out.parent.iterdir()] == ["data"]

    written = []

    def failing_write(path, image):
        written.append(path)
        if len(written) == 7:
            raise OSError("disk full")
        cv2.imwrite(str(path), image)

    monkeypatch.setattr(demo, "_write_png", failing_write)
    with pytest.raises(OSError, match="disk full"):
        generate_demo_dataset(tmp_path / "broken", tiny, progress=False)
    assert len(written) == 7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nested"]


def test_ensure_generates_once_per_config(tmp_path, monkeypatch):
    monkeypatch.setenv("KERASFACE_CACHE", str(tmp_path / "cache"))
    tiny = DemoConfig(identities=2, images_per_identity=2, image_size=32)
    first = ensure_demo_dataset(config=tiny)
    assert first.parent == tmp_path / "cache" and first.name.startswith("demo-")
    assert (first / "manifest.json").exists()

    calls = []
    monkeypatch.setattr(demo, "generate_demo_dataset", lambda *a, **k: calls.append(a))
    assert ensure_demo_dataset(config=tiny) == first
    assert calls == []
    ensure_demo_dataset(config=dataclasses.replace(tiny, seed=1))
    assert calls[0][0] != first
    monkeypatch.undo()

    manifest = json.loads((first / "manifest.json").read_text())
    manifest["config"]["image_size"] = 48
    (first / "manifest.json").write_text(json.dumps(manifest))
    assert ensure_demo_dataset(cache_dir=tmp_path / "cache", config=tiny, progress=False) == first
    assert json.loads((first / "manifest.json").read_text())["config"] == tiny.to_dict()


def test_script_writes_the_dataset_and_reports_it(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("make_demo_data", REPO / "pipelines" / "make_demo_data.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "cli"
    size = ["--identities", "2", "--images-per-identity", "3", "--image-size", "32", "--seed", "4", "--quiet"]
    args = ["--out", str(out), *size, "--lights", "3"]
    assert script.main(args) == 0
    assert str(out) in capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["num_lights"] == 3 and manifest["config"]["seed"] == 4
    assert len(list((out / "photometric").rglob("*.png"))) == 2 * 3 * 3
    assert script.main(args) == 1
    assert capsys.readouterr().err == f"error: {out} is not empty; pass overwrite=True (--overwrite) to replace it\n"
    assert script.main(["--out", str(out), *size, "--no-photometric", "--overwrite"]) == 0
    assert not (out / "photometric").exists() and not (out / "lights.json").exists()
