"""Photometric stereo: exact Lambertian recovery, the sign of the integrated depth, the
modality tiles of the demo dataset, safe and resumable writes, broken inputs, the CLI."""

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from kerasface.datasets.demo import (
    DemoConfig,
    generate_demo_dataset,
    photometric_lights,
    render_surface,
    sample_identity,
    sample_image,
)
from kerasface.modalities.photometric import (
    MODALITIES,
    build_modality_dataset,
    integrate_normals,
    load_lights,
    modality_images,
    modality_tile,
    photometric_stereo,
)

REPO = Path(__file__).resolve().parents[1]
TINY = DemoConfig(identities=2, images_per_identity=2, image_size=48, seed=1)


def _height_field(h=64, w=80):
    """Two off-centre bumps on a gentle ramp (no symmetry hides a flipped axis); rows run down,
    so the normal in the x right, y up frame is (-dH/dcol, +dH/drow, 1) normalised."""
    row, col = np.mgrid[0:h, 0:w].astype(np.float64)
    height = 0.05 * col - 0.03 * row
    d_col, d_row = np.full((h, w), 0.05), np.full((h, w), -0.03)
    for amplitude, r0, c0, s in ((9.0, 22.0, 28.0, 8.0), (4.0, 44.0, 56.0, 6.0)):
        bump = amplitude * np.exp(-((row - r0) ** 2 + (col - c0) ** 2) / (2 * s**2))
        height += bump
        d_col -= (col - c0) / s**2 * bump
        d_row -= (row - r0) / s**2 * bump
    normals = np.stack([-d_col, d_row, np.ones_like(height)], -1)
    albedo = 0.55 + 0.3 * np.sin(col / 5.0) * np.cos(row / 7.0)
    return height, normals / np.linalg.norm(normals, axis=-1, keepdims=True), albedo


def _files(root: Path) -> dict[str, tuple[bytes, int]]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {p.relative_to(root).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns) for p in files}


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return generate_demo_dataset(tmp_path_factory.mktemp("photometric") / "demo", TINY, progress=False)


def test_lambertian_height_field_is_recovered_exactly_and_integrates_to_a_bump():
    height, normals, albedo = _height_field()
    lights = photometric_lights(5, 35.0)
    shading = normals @ lights.T
    assert shading.min() > 0.05
    images = np.moveaxis(albedo[..., None] * shading, -1, 0)

    found_albedo, found_normals = photometric_stereo(images, lights)
    np.testing.assert_allclose(found_normals, normals, atol=1e-6)
    np.testing.assert_allclose(found_albedo, albedo, atol=1e-9)

    depth = integrate_normals(found_normals)
    truth = height - height.mean()
    assert abs(depth.mean()) < 1e-9
    assert np.sqrt(np.mean((depth - truth) ** 2)) < 0.02 * truth.std()
    assert depth[22, 28] - depth[0, 0] > 5.0, "the bump came out as a dent"
    mirrored = integrate_normals(normals * [-1, 1, 1])
    assert np.sqrt(np.mean((mirrored - truth) ** 2)) > 0.3 * truth.std(), "a flipped x axis went unnoticed"


def test_uint8_images_and_flat_black_pixels():
    lights = photometric_lights(4, 30.0)
    images = np.zeros((4, 3, 5), np.uint8)
    images[:, 1, 2] = np.round(255 * 0.8 * lights[:, 2])
    albedo, normals = photometric_stereo(images, lights)
    assert albedo[1, 2] == pytest.approx(0.8, abs=0.01) and normals[1, 2, 2] > 0.999
    assert np.all(albedo[0] == 0) and np.all(normals[0] == [0.0, 0.0, 1.0])


def test_shadow_threshold_drops_shadowed_readings():
    _, normals, albedo = _height_field(40, 40)
    normals = np.stack([normals[..., 0] * 4, normals[..., 1] * 4, normals[..., 2]], -1)
    normals /= np.linalg.norm(normals, axis=-1, keepdims=True)
    lights = photometric_lights(6, 55.0)
    shading = normals @ lights.T
    images = np.moveaxis(albedo[..., None] * np.maximum(shading, 0.0), -1, 0)
    lit = (shading > 0).sum(-1)
    partly = (lit >= 3) & (lit < 6)
    assert partly.sum() > 50

    _, plain = photometric_stereo(images, lights)
    found_albedo, found = photometric_stereo(images, lights, shadow_threshold=1e-9)
    assert np.abs(plain - normals)[partly].max() > 0.05
    np.testing.assert_allclose(found[lit >= 3], normals[lit >= 3], atol=1e-6)
    np.testing.assert_allclose(found_albedo[lit >= 3], albedo[lit >= 3], atol=1e-9)


def test_modality_images_and_tile_layout():
    albedo = np.array([[0.0, 0.5, 1.4]])
    normals = np.array([[[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]])
    depth = np.array([[-2.0, 0.0, 2.0]])
    albedo_rgb, normal_rgb, depth_rgb = modality_images(albedo, normals, depth)
    np.testing.assert_array_equal(albedo_rgb[0, :, 0], [0, 128, 255])
    np.testing.assert_array_equal(normal_rgb[0], [[128, 128, 255], [255, 128, 128], [128, 0, 128]])
    np.testing.assert_array_equal(depth_rgb[0, :, 2], [0, 128, 255])
    assert all(a.dtype == np.uint8 and a.shape == (1, 3, 3) for a in (albedo_rgb, normal_rgb, depth_rgb))
    assert np.all(modality_images(albedo, normals, np.ones((1, 3)))[2] == 0)

    tile = modality_tile(albedo_rgb, normal_rgb, depth_rgb)
    assert tile.shape == (1, 9, 3) and MODALITIES == ("albedo", "normal", "depth")
    for k, panel in enumerate((albedo_rgb, normal_rgb, depth_rgb)):
        np.testing.assert_array_equal(tile[:, 3 * k : 3 * k + 3], panel)
    with pytest.raises(ValueError, match="equal"):
        modality_tile(albedo_rgb, normal_rgb[:, :2], depth_rgb)


def test_demo_tiles_csv_resume_and_input_untouched(demo, tmp_path):
    before = _files(demo)
    out = tmp_path / "modalities"
    summary = build_modality_dataset(demo, out, progress=False)
    assert (summary.written, summary.reused, summary.skipped, summary.csv_rows) == (4, 0, [], 4)
    assert not (out / "skipped.txt").exists()

    rows, source_rows = _rows(out / "attributes.csv"), _rows(demo / "attributes.csv")
    assert rows == source_rows and rows[0]["path"] == "images/id_000/0.png"
    lights = load_lights(demo / "lights.json")
    for row in rows:
        tile = cv2.imread(str(out / row["path"]), cv2.IMREAD_UNCHANGED)
        assert tile.shape == (48, 144, 3) and tile.dtype == np.uint8
        identity = sample_identity(TINY, int(row["identity"].removeprefix("id_")))
        surface = render_surface(identity, sample_image(TINY, identity, int(Path(row["path"]).stem)))
        rgb = tile[..., ::-1]
        normals = rgb[:, 48:96] / 127.5 - 1.0
        normals /= np.linalg.norm(normals, axis=-1, keepdims=True)
        lit = surface.face_mask & np.all(surface.normals @ lights.T > 0.2, axis=-1)
        assert lit.sum() > 0.3 * surface.face_mask.sum()
        angle = np.degrees(np.arccos(np.clip(np.sum(normals * surface.normals, -1), -1.0, 1.0)))[lit]
        assert np.median(angle) < 6.0 and np.percentile(angle, 90) < 15.0, row
        depth = rgb[:, 96:, 0].astype(np.float64)
        assert np.corrcoef(depth[surface.face_mask], surface.height[surface.face_mask])[0, 1] > 0.95, row
        gray = np.concatenate([rgb[:, :48], rgb[:, 96:]], axis=1)
        assert np.all(gray == gray[..., :1])

    written = _files(out)
    again = build_modality_dataset(demo, out, progress=False)
    assert (again.written, again.reused, again.skipped) == (0, 4, [])
    assert _files(out) == written
    assert build_modality_dataset(demo, out, progress=False, overwrite=True).written == 4
    assert _files(demo) == before
    assert not list(out.rglob(".*"))


def test_integrated_demo_normals_match_the_demo_height():
    identity = sample_identity(TINY, 0)
    surface = render_surface(identity, sample_image(TINY, identity, 0))
    depth = integrate_normals(surface.normals)
    height = surface.height - surface.height.mean()
    assert np.sqrt(np.mean((depth - height) ** 2)) < 0.1 * height.std()


def test_broken_samples_are_skipped_and_listed(demo, tmp_path):
    data = tmp_path / "broken"
    shutil.copytree(demo, data)
    missing = data / "photometric/id_000/1/light_2.png"
    missing.unlink()
    truncated = data / "photometric/id_001/0/light_0.png"
    truncated.write_bytes(truncated.read_bytes()[:100])
    resized = data / "photometric/id_001/1/light_3.png"
    cv2.imwrite(str(resized), np.zeros((40, 48), np.uint8))
    before = _files(data)

    summary = build_modality_dataset(data, tmp_path / "out", progress=False)
    assert (summary.written, summary.skipped_samples) == (1, 3)
    reasons = {s.path: s.reason for s in summary.skipped if s.row is None}
    assert "missing light image" in reasons[str(missing)]
    assert "truncated PNG" in reasons[str(truncated)]
    assert "differ in size" in reasons[str(resized.parent)] and "light_3.png 48x40" in reasons[str(resized.parent)]
    assert sorted(s.row for s in summary.skipped if s.row is not None) == [3, 4, 5]
    assert [r["path"] for r in _rows(tmp_path / "out/attributes.csv")] == ["images/id_000/0.png"]
    assert sorted((tmp_path / "out/images").rglob("*.png")) == [tmp_path / "out/images/id_000/0.png"]
    listing = (tmp_path / "out/skipped.txt").read_text()
    assert all(path in listing for path in (str(missing), str(truncated), str(resized.parent)))
    assert _files(data) == before

    extra = data / "photometric/id_000/0/light_4.png"
    shutil.copy(data / "photometric/id_000/0/light_0.png", extra)
    again = build_modality_dataset(data, tmp_path / "out2", progress=False)
    assert any(s.path == str(extra.parent) and "lights.json has 4 lights" in s.reason for s in again.skipped)


def test_bad_lights_and_folders_raise_clear_errors(demo, tmp_path):
    lights = tmp_path / "lights.json"
    lights.write_text(json.dumps({"lights": [[0, 0, 1], [0.5, 0, 1]]}))
    with pytest.raises(ValueError, match=r"lights.json.*at least 3 lights, got 2"):
        load_lights(lights)
    lights.write_text(json.dumps({"lights": [[0, 0, 1], [0.5, 0, 1], [0, 0, 0]]}))
    with pytest.raises(ValueError, match=r"light 2 is \[0.0, 0.0, 0.0\]"):
        load_lights(lights)
    lights.write_text('{"lights": [[0, 0, 1], [0.5, 0')
    with pytest.raises(ValueError, match="cannot read"):
        load_lights(lights)
    np.testing.assert_allclose(np.linalg.norm(load_lights(demo / "lights.json"), axis=1), 1.0)
    with pytest.raises(FileNotFoundError, match="lights.json"):
        build_modality_dataset(tmp_path, tmp_path / "out", progress=False)
    with pytest.raises(ValueError, match="outside the input folder"):
        build_modality_dataset(demo, demo / "modalities", progress=False)


def test_cli_help_and_run(demo, tmp_path):
    script = str(REPO / "pipelines" / "photometric_stereo.py")
    shown = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and "albedo | normal | depth" in shown.stdout
    out = tmp_path / "cli"
    command = [sys.executable, script, "--data", str(demo), "--out", str(out), "--quiet"]
    run = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "4 tile(s) written, 0 reused, 0 skipped" in run.stdout
    assert len(list((out / "images").rglob("*.png"))) == 4
    failed = subprocess.run(
        [sys.executable, script, "--data", str(tmp_path), "--out", str(out)], capture_output=True, text=True, timeout=60
    )
    assert failed.returncode == 1 and "no photometric-stereo data" in failed.stderr
