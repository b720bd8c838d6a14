"""MTCNN detection, 5-point alignment, photo reading, dataset preparation and the identification
app, on real photographs that installed packages ship: scikit-image's astronaut (Eileen Collins)
and matplotlib's grace_hopper.jpg."""

import json

import cv2
import matplotlib.cbook
import numpy as np
import pytest
from skimage import data as skdata

from kerasface.errors import BadInputError
from kerasface.faces.align import (ARCFACE_112, ARCFACE_112x96, align_face, alignment_matrix, crop_face,
                                   output_size, template, transform_points, umeyama)
from kerasface.faces.detect import FaceDetector, select_faces, shape_batches
from kerasface.faces.imread import read_photo

EYE_TOLERANCE_PX = 4.0


def _write(path, rgb) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def _shifted(image, dx, dy, scale=1.0, size=None):
    h, w = image.shape[:2]
    return cv2.warpAffine(image, np.array([[scale, 0, dx], [0, scale, dy]], np.float64), size or (w, h))


@pytest.fixture(scope="module")
def photos():
    """Both photographs at 256 px wide (faces of about 45 and 85 px), RGB uint8."""
    astronaut = cv2.resize(skdata.astronaut(), (256, 256), interpolation=cv2.INTER_AREA)
    grace = read_photo(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    grace = cv2.resize(grace, (256, 300), interpolation=cv2.INTER_AREA)
    return {"astronaut": astronaut, "grace": grace}


@pytest.fixture(scope="module")
def detector():
    return FaceDetector()


@pytest.fixture(scope="module")
def pair_image(photos):
    """Both people side by side in one 512x300 frame: astronaut left, Grace Hopper right."""
    frame = np.zeros((300, 512, 3), np.uint8)
    frame[:256, :256] = photos["astronaut"]
    frame[:, 256:] = photos["grace"]
    return frame


# detection


@pytest.mark.parametrize("name", ["astronaut", "grace"])
def test_one_face_with_landmarks_inside_the_box_in_anatomical_order(photos, detector, name):
    faces = detector.detect_one(photos[name])
    assert len(faces) == 1
    face = faces[0]
    assert face.confidence > 0.95
    x1, y1, x2, y2 = face.box
    assert 30 < x2 - x1 < 150 and 30 < y2 - y1 < 150
    (lex, ley), (rex, rey), (nx, ny), (mlx, mly), (mrx, mry) = face.landmarks
    assert np.all((face.landmarks[:, 0] > x1) & (face.landmarks[:, 0] < x2))
    assert np.all((face.landmarks[:, 1] > y1) & (face.landmarks[:, 1] < y2))
    assert lex < nx < rex and mlx < mrx
    assert max(ley, rey) < ny < min(mly, mry)


def test_several_images_per_call_match_one_at_a_time(photos, detector):
    blank = np.full((200, 180, 3), 128, np.uint8)
    tiny = np.zeros((10, 30, 3), np.uint8)
    batched = detector.detect([photos["astronaut"], blank, photos["grace"], tiny])
    assert [len(f) for f in batched] == [1, 0, 1, 0]
    for faces, name in ((batched[0], "astronaut"), (batched[2], "grace")):
        alone = detector.detect_one(photos[name])[0]
        assert np.abs(faces[0].box - alone.box).max() < 2.0
        assert np.abs(faces[0].landmarks - alone.landmarks).max() < 2.0


def test_padding_of_a_batch_is_undone_by_each_image_own_offset(photos, detector):
    blank = np.full((256, 256, 3), 128, np.uint8)
    assert shape_batches([blank.shape[:2], photos["grace"].shape[:2]], detector.batch_size) == [[0, 1]]
    batched = detector.detect([blank, photos["grace"]])
    alone = detector.detect_one(photos["grace"])
    assert [len(f) for f in batched] == [0, 1] and len(alone) == 1
    np.testing.assert_allclose(batched[1][0].box, alone[0].box, atol=1e-3)
    np.testing.assert_allclose(batched[1][0].landmarks, alone[0].landmarks, atol=1e-3)


def test_minimum_face_size_and_confidence_threshold(photos, detector):
    confidence = detector.detect_one(photos["grace"])[0].confidence
    assert not FaceDetector(min_face_size=200).detect_one(photos["grace"])
    strict = FaceDetector(threshold=(confidence + 1.0) / 2)
    assert not strict.detect_one(photos["grace"])
    with pytest.raises(BadInputError, match="confidence threshold"):
        FaceDetector(threshold=1.5)


def test_large_images_are_detected_downscaled_in_original_pixels(photos, detector):
    face = detector.detect_one(photos["grace"])[0]
    big = cv2.resize(photos["grace"], (512, 600), interpolation=cv2.INTER_CUBIC)
    scaled = FaceDetector(max_side=300).detect_one(big)
    assert len(scaled) == 1
    assert np.abs(scaled[0].box - 2 * face.box).max() < 6.0
    assert np.abs(scaled[0].landmarks - 2 * face.landmarks).max() < 6.0


def test_largest_and_all_modes(pair_image, detector):
    faces = detector.detect_one(pair_image)
    assert len(faces) == 2
    assert faces[0].area > faces[1].area and faces[0].box[0] > 256 > faces[1].box[2]
    assert select_faces(faces, "largest") == faces[:1]
    assert select_faces(faces, "all") == faces
    with pytest.raises(BadInputError, match="unknown face mode 'biggest'"):
        select_faces(faces, "biggest")


def test_shape_batches_group_similar_shapes_up_to_the_batch_size():
    shapes = [(250, 250)] * 5 + [(600, 400), (100, 100), (250, 240)]
    batches = shape_batches(shapes, batch_size=4)
    assert sorted(i for b in batches for i in b) == list(range(8))
    assert all(len(b) <= 4 for b in batches)
    for batch in batches:
        height = max(shapes[i][0] for i in batch)
        width = max(shapes[i][1] for i in batch)
        assert all(height * width <= 1.25 * shapes[i][0] * shapes[i][1] for i in batch)
    assert [b for b in batches if 5 in b] == [[5]] and [b for b in batches if 6 in b] == [[6]]


# alignment


def test_umeyama_recovers_a_similarity_and_agrees_with_scikit_image():
    from skimage.transform import SimilarityTransform

    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (5, 2))
    angle, scale, shift = 0.4, 1.7, np.array([12.0, -5.0])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = scale * src @ rotation.T + shift
    matrix = umeyama(src, dst)
    np.testing.assert_allclose(matrix[:2, :2], scale * rotation, atol=1e-9)
    np.testing.assert_allclose(matrix[:2, 2], shift, atol=1e-9)
    mirrored = dst * np.array([-1.0, 1.0]) + rng.normal(0, 2.0, dst.shape)
    ours = umeyama(src, mirrored)
    theirs = SimilarityTransform.from_estimate(src, mirrored).params
    np.testing.assert_allclose(ours, theirs, atol=1e-8)
    assert np.linalg.det(ours[:2, :2]) > 0


def test_templates_and_sizes():
    np.testing.assert_allclose(template(112), ARCFACE_112)
    np.testing.assert_allclose(template("112x96"), ARCFACE_112x96)
    np.testing.assert_allclose(ARCFACE_112 - ARCFACE_112x96, [[8, 0]] * 5)
    np.testing.assert_allclose(template(224), 2 * ARCFACE_112)
    np.testing.assert_allclose(template((224, 192)), 2 * ARCFACE_112x96)
    assert output_size("112x96") == (112, 96) and output_size(112) == (112, 112)
    with pytest.raises(BadInputError, match="expected N or HxW"):
        output_size("big")


@pytest.mark.parametrize("name", ["astronaut", "grace"])
@pytest.mark.parametrize("size", [112, (112, 96)])
def test_eye_centres_land_on_the_template(photos, detector, name, size):
    """The landmarks mapped by the alignment, and the eyes MTCNN finds again on the aligned
    face itself, lie within a few pixels of the template's eyes."""
    image = photos[name]
    face = detector.detect_one(image)[0]
    eyes = template(size)[:2]
    mapped = transform_points(alignment_matrix(face.landmarks, size), face.landmarks[:2])
    assert np.linalg.norm(mapped - eyes, axis=1).max() < EYE_TOLERANCE_PX
    aligned = align_face(image, face.landmarks, size)
    assert aligned.shape == (*output_size(size), 3) and aligned.dtype == np.uint8
    canvas = np.zeros((224, 224, 3), np.uint8)
    canvas[56:56 + aligned.shape[0], 56:56 + aligned.shape[1]] = aligned
    again = detector.detect_one(canvas)
    assert len(again) == 1
    assert np.linalg.norm(again[0].landmarks[:2] - 56 - eyes, axis=1).max() < EYE_TOLERANCE_PX


def test_box_crop_with_margin():
    image = np.zeros((200, 300, 3), np.uint8)
    image[50:150, 100:200] = 255
    box = (100, 50, 200, 150)
    tight = crop_face(image, box, 112, margin=0.0)
    assert tight[4:-4, 4:-4].min() == 255
    loose = crop_face(image, box, 112, margin=0.5)
    white = np.argwhere(loose[:, :, 0] > 127)
    assert abs(white[:, 0].min() - 28) <= 1 and abs(white[:, 0].max() - 83) <= 1
    assert abs(white[:, 1].min() - 28) <= 1 and abs(white[:, 1].max() - 83) <= 1
    narrow = crop_face(image, box, (112, 96), margin=0.0)
    white = np.argwhere(narrow[:, :, 0] > 127)
    assert narrow.shape == (112, 96, 3)
    assert white[:, 1].min() == 0 and white[:, 1].max() == 95
    assert abs(white[:, 0].min() - 8) <= 1 and abs(white[:, 0].max() - 103) <= 1


# reading photos


def test_grayscale_cmyk_16_bit_and_exif_rotated_photos(tmp_path):
    from PIL import Image

    rgb = np.zeros((40, 60, 3), np.uint8)
    rgb[:10, :20] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rgb).save(tmp_path / "rotated.jpg", exif=exif.tobytes(), quality=95)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    gray = np.tile(np.arange(60, dtype=np.uint16) * 1000, (40, 1))
    assert cv2.imwrite(str(tmp_path / "deep.png"), gray)
    cv2.imwrite(str(tmp_path / "gray.png"), (gray // 256).astype(np.uint8))

    rotated = read_photo(tmp_path / "rotated.jpg")
    assert rotated.shape == (60, 40, 3)
    assert rotated[2, -3, 0] > 200 and rotated[2, -3, 1:].max() < 60
    assert rotated[2, 2].max() < 60
    cmyk = read_photo(tmp_path / "cmyk.jpg")
    assert cmyk.shape == (40, 60, 3) and cmyk[2, 2, 0] > 200 and cmyk[2, 2, 1:].max() < 60
    for name in ("deep.png", "gray.png"):
        image = read_photo(tmp_path / name)
        assert image.shape == (40, 60, 3) and image.dtype == np.uint8
        assert np.array_equal(image[..., 0], image[..., 2])
        assert abs(int(image[0, 59, 0]) - 59000 // 256) <= 1
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8\xff" + b"x" * 50)
    with pytest.raises(BadInputError, match="corrupt.jpg: not a readable image"):
        read_photo(tmp_path / "corrupt.jpg")


# dataset preparation


def _only_error_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), text
    return lines[0]


def _hidden_files(root):
    return [p for p in root.rglob(".*")]


@pytest.fixture
def raw_folder(tmp_path, photos, pair_image):
    """Real photos stored every way the preparation must handle, a picture without a face, a
    corrupt and an empty file, and entries to ignore."""
    from PIL import Image

    src = tmp_path / "raw"
    astronaut, grace = photos["astronaut"], photos["grace"]
    _write(src / "eileen" / "photo.jpg", astronaut)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.rot90(astronaut).copy()).save(src / "eileen" / "rotated.jpg", exif=exif.tobytes(),
                                                     quality=95)
    assert cv2.imwrite(str(src / "eileen" / "gray.png"), cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY))
    deep = cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR).astype(np.uint16) * 257
    assert cv2.imwrite(str(src / "eileen" / "deep.png"), deep)
    _write(src / "eileen" / "nothing.png", cv2.resize(skdata.coffee(), (200, 133), interpolation=cv2.INTER_AREA))
    _write(src / "grace" / "photo.jpg", grace)
    Image.fromarray(grace).convert("CMYK").save(src / "grace" / "cmyk.jpg", quality=95)
    _write(src / "grace" / "pair.png", pair_image)
    good = (src / "grace" / "photo.jpg").read_bytes()
    (src / "grace" / "corrupt.jpg").write_bytes(good[: len(good) // 3])
    (src / "grace" / "empty.png").write_bytes(b"")
    (src / "grace" / "notes.txt").write_text("not an image")
    (src / "grace" / ".DS_Store").write_bytes(b"\0")
    _write(src / "stray.jpg", astronaut)
    return src


ALIGNED = ["eileen/deep.png", "eileen/gray.png", "eileen/photo.jpg", "eileen/rotated.jpg", "grace/cmyk.jpg",
           "grace/pair.png", "grace/photo.jpg"]


def test_prepare_counts_every_case_leaves_src_alone_and_resumes(raw_folder, tmp_path, snapshot, capsys):
    from kerasface.cli.prepare_faces import main

    before = snapshot(raw_folder)
    dst = tmp_path / "aligned"
    assert main([str(raw_folder), str(dst), "--quiet", "--workers", "2"]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((dst / "summary.json").read_text())
    assert summary["complete"] is True
    assert summary["counts"] == {"aligned": 7, "no_face": 1, "center_crop": 0, "several_faces": 1, "unreadable": 2,
                                 "skipped_done": 0, "copied": 0, "ignored": 3}
    assert sorted(summary["aligned"]) == ALIGNED
    assert summary["no_face"] == ["eileen/nothing.png"]
    assert {u["file"] for u in summary["unreadable"]} == {"grace/corrupt.jpg", "grace/empty.png"}
    assert {i["file"] for i in summary["ignored"]} == {"stray.jpg", "grace/notes.txt", "grace/.DS_Store"}
    several = summary["several_faces"][0]
    assert several["file"] == "grace/pair.png" and several["faces"] == 2 and several["kept"]["box"][0] > 256
    for line in ("aligned: 7", "no face found: 1", "several faces: 1", "unreadable/corrupt: 2", "skipped as done: 0",
                 "grace/corrupt.jpg: ", "eileen/nothing.png", "grace/pair.png: 2 faces, kept the largest"):
        assert line in printed
    assert snapshot(raw_folder) == before
    outputs = sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*") if p.is_file())
    assert outputs == sorted(ALIGNED + ["summary.json"])
    faces = {rel: read_photo(dst / rel).astype(np.float32) for rel in ALIGNED}
    assert all(f.shape == (112, 112, 3) for f in faces.values())
    for rel in ALIGNED:
        own, other = (faces["eileen/photo.jpg"], faces["grace/photo.jpg"])[::1 if rel.startswith("eileen") else -1]
        assert 2 * np.abs(faces[rel] - own).mean() < np.abs(faces[rel] - other).mean()

    written = snapshot(dst)
    assert main([str(raw_folder), str(dst), "--quiet"]) == 0
    again = json.loads((dst / "summary.json").read_text())
    assert again["counts"] == {"aligned": 0, "no_face": 1, "center_crop": 0, "several_faces": 0, "unreadable": 2,
                               "skipped_done": 7, "copied": 0, "ignored": 3}
    assert sorted(again["skipped_done"]) == ALIGNED
    assert {k: v for k, v in snapshot(dst).items() if not k.endswith("summary.json")} == \
        {k: v for k, v in written.items() if not k.endswith("summary.json")}
    assert snapshot(raw_folder) == before


class _Interrupting:
    """A detector that lets ``calls`` batches of one image through, then raises KeyboardInterrupt."""

    def __init__(self, inner, calls):
        self.inner, self.calls = inner, calls
        self.batch_size, self.min_face_size, self.threshold = 1, inner.min_face_size, inner.threshold

    def detect(self, images):
        self.calls -= 1
        if self.calls < 0:
            raise KeyboardInterrupt
        return self.inner.detect(images)


def test_interrupted_preparation_keeps_whole_files_and_a_rerun_completes(tmp_path, photos, detector):
    from kerasface.faces.prepare import prepare_faces

    src, dst = tmp_path / "raw", tmp_path / "aligned"
    for k in range(4):
        _write(src / "eileen" / f"{k}.png", _shifted(photos["astronaut"], 3 * k, 2 * k))
    with pytest.raises(KeyboardInterrupt):
        prepare_faces(src, dst, detector=_Interrupting(detector, 2), progress=False)
    summary = json.loads((dst / "summary.json").read_text())
    assert summary["complete"] is False and sorted(summary["aligned"]) == ["eileen/0.png", "eileen/1.png"]
    assert sorted(p.name for p in (dst / "eileen").iterdir()) == ["0.png", "1.png"]
    assert not _hidden_files(dst)
    summary = prepare_faces(src, dst, detector=detector, progress=False)
    assert summary["complete"] is True
    assert sorted(summary["skipped_done"]) == ["eileen/0.png", "eileen/1.png"]
    assert sorted(summary["aligned"]) == ["eileen/2.png", "eileen/3.png"]
    assert sorted(p.name for p in (dst / "eileen").iterdir()) == ["0.png", "1.png", "2.png", "3.png"]


def test_all_faces_at_112x96(tmp_path, pair_image, photos, detector):
    from kerasface.faces.prepare import prepare_faces

    src, dst = tmp_path / "raw", tmp_path / "aligned"
    _write(src / "both" / "pair.png", pair_image)
    summary = prepare_faces(src, dst, size="112x96", mode="all", detector=detector, progress=False)
    assert summary["several_faces"][0]["kept"] == "all"
    assert sorted(p.name for p in (dst / "both").iterdir()) == ["pair.png", "pair_face1.png"]
    largest, second = read_photo(dst / "both" / "pair.png"), read_photo(dst / "both" / "pair_face1.png")
    assert largest.shape == second.shape == (112, 96, 3)
    alone = {name: align_face(image, detector.detect_one(image)[0].landmarks, (112, 96)).astype(np.float32)
             for name, image in photos.items()}
    for face, own, other in ((largest, "grace", "astronaut"), (second, "astronaut", "grace")):
        face = face.astype(np.float32)
        assert 2 * np.abs(face - alone[own]).mean() < np.abs(face - alone[other]).mean()


def test_center_mode_keeps_the_central_face_over_a_larger_one_at_the_side(tmp_path, photos, detector, capsys):
    from kerasface.cli.prepare_faces import main

    canvas = np.full((300, 700, 3), 128, np.uint8)
    canvas[80:220, 280:420] = photos["astronaut"][:140, 40:180]
    canvas[:, 444:] = photos["grace"]
    src = tmp_path / "raw"
    _write(src / "someone" / "photo.png", canvas)
    faces = detector.detect_one(canvas)
    assert len(faces) == 2 and faces[0].box[0] > 444 > faces[1].box[2]
    kept = {}
    for mode in ("largest", "center"):
        dst = tmp_path / mode
        assert main([str(src), str(dst), "--mode", mode, "--quiet"]) == 0
        summary = json.loads((dst / "summary.json").read_text())
        assert summary["several_faces"][0]["faces"] == 2
        kept[mode] = summary["several_faces"][0]["kept"]["box"]
        assert f"kept {'the largest' if mode == 'largest' else 'the most central'}" in capsys.readouterr().out
        face = read_photo(dst / "someone" / "photo.png").astype(np.float32)
        alone = {name: align_face(image, detector.detect_one(image)[0].landmarks).astype(np.float32)
                 for name, image in photos.items()}
        own, other = ("grace", "astronaut") if mode == "largest" else ("astronaut", "grace")
        assert 2 * np.abs(face - alone[own]).mean() < np.abs(face - alone[other]).mean()
    assert kept["largest"][0] > 444 and kept["center"][0] > 280 and kept["center"][2] < 420


def test_lfw_style_folder_with_center_crop_fallback_keeps_the_pair_set_complete(tmp_path, photos, snapshot, capsys):
    from PIL import Image

    from kerasface.cli.prepare_faces import main
    from kerasface.eval.pairs import read_lfw_pairs

    src = tmp_path / "lfw"
    (src / "Eileen_Collins").mkdir(parents=True)
    assert cv2.imwrite(str(src / "Eileen_Collins" / "Eileen_Collins_0001.jpg"),
                       cv2.cvtColor(photos["astronaut"], cv2.COLOR_RGB2GRAY))
    Image.fromarray(photos["astronaut"]).convert("CMYK").save(src / "Eileen_Collins" / "Eileen_Collins_0002.jpg",
                                                              quality=95)
    _write(src / "Grace_Hopper" / "Grace_Hopper_0001.jpg", photos["grace"])
    empty = cv2.resize(skdata.coffee(), (600, 450), interpolation=cv2.INTER_AREA)
    _write(src / "Nobody" / "Nobody_0001.jpg", empty)
    (src / "pairs.txt").write_text("1 1\nEileen_Collins 1 2\nGrace_Hopper 1 Nobody 1\n")
    before = snapshot(src)

    dropped = tmp_path / "dropped"
    assert main([str(src), str(dropped), "--mode", "center", "--quiet"]) == 0
    summary = json.loads((dropped / "summary.json").read_text())
    assert summary["no_face"] == ["Nobody/Nobody_0001.jpg"] and summary["center_crop"] == []
    assert summary["copied"] == ["pairs.txt"] and summary["ignored"] == []
    with pytest.raises(BadInputError, match="Nobody_0001.jpg not found"):
        read_lfw_pairs(dropped / "pairs.txt")
    capsys.readouterr()

    dst = tmp_path / "aligned"
    assert main([str(src), str(dst), "--mode", "center", "--fallback", "center-crop", "--quiet"]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((dst / "summary.json").read_text())
    assert summary["center_crop"] == ["Nobody/Nobody_0001.jpg"] and summary["no_face"] == []
    assert sorted(summary["aligned"]) == ["Eileen_Collins/Eileen_Collins_0001.jpg",
                                          "Eileen_Collins/Eileen_Collins_0002.jpg", "Grace_Hopper/Grace_Hopper_0001.jpg"]
    assert summary["counts"]["center_crop"] == 1 and summary["fallback"] == "center-crop"
    assert "no face found, centre crop written: 1\n    Nobody/Nobody_0001.jpg" in printed
    pairs = read_lfw_pairs(dst / "pairs.txt")
    assert all(read_photo(path).shape == (112, 112, 3) for path in pairs.images)
    # insightface's rule on 600x450: inset (37, 28), grown by 22 px, within the image: x 15..585, y 6..444
    written = read_photo(dst / "Nobody" / "Nobody_0001.jpg").astype(np.float32)
    expected = cv2.resize(read_photo(src / "Nobody" / "Nobody_0001.jpg")[6:444, 15:585], (112, 112))
    whole = cv2.resize(read_photo(src / "Nobody" / "Nobody_0001.jpg"), (112, 112))
    assert np.abs(written - expected).mean() < 0.5 * np.abs(written - whole).mean()
    assert snapshot(src) == before


def test_prepare_bad_folders_give_one_error_line(tmp_path, capsys):
    from kerasface.cli.prepare_faces import main

    src = tmp_path / "raw"
    (src / "empty_person").mkdir(parents=True)
    cases = [([str(tmp_path / "missing"), str(tmp_path / "out")], "missing: no such folder"),
             ([str(src), str(src / "aligned")], "must lie outside"),
             ([str(src), str(tmp_path / "out")], "no images in identity sub-folders")]
    for argv, message in cases:
        assert main(argv + ["--quiet"]) == 1
        assert message in _only_error_line(capsys.readouterr().err)
    assert not (tmp_path / "out").exists() and not (src / "aligned").exists()


# identification app


def _embedding_model(path, seed):
    import keras

    from kerasface.models import create_backbone

    keras.utils.set_random_seed(seed)
    create_backbone("mobilefacenet", input_shape=(112, 112, 3), embedding_dim=64).save(path)
    return path


@pytest.fixture(scope="module")
def app_files(tmp_path_factory, photos, pair_image):
    """An untrained MobileFaceNet (.keras and a run folder with report.json), a gallery folder of
    two people (each photo and its mirror image) and probes: the pair shifted and scaled."""
    import shutil

    root = tmp_path_factory.mktemp("app")
    model = _embedding_model(root / "model.keras", seed=0)
    run = root / "run"
    run.mkdir()
    shutil.copy(model, run / "model.keras")
    (run / "report.json").write_text(json.dumps({"results": {"test": {"threshold": 0.4, "accuracy": 0.9}}}))
    people = root / "people"
    for name, folder in (("astronaut", "eileen"), ("grace", "grace")):
        _write(people / folder / "photo.png", photos[name])
        _write(people / folder / "mirror.png", photos[name][:, ::-1].copy())
    probes = root / "probes"
    _write(probes / "pair.png", _shifted(pair_image, 12, 8, 0.95))
    _write(probes / "nothing.png", cv2.resize(skdata.coffee(), (200, 133), interpolation=cv2.INTER_AREA))
    (probes / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return {"root": root, "model": model, "run": run, "people": people, "probes": probes}


@pytest.fixture(scope="module")
def gallery(app_files):
    from kerasface.cli.identify import main

    out = app_files["root"] / "gallery.npz"
    assert main(["enroll", "--model", str(app_files["model"]), "--gallery", str(app_files["people"]),
                 "--out", str(out), "--flip", "--quiet"]) == 0
    return out


def _log(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _names_left_to_right(faces) -> list[str]:
    return [f["name"] for f in sorted(faces, key=lambda f: f["box"][0])]


def test_enrolled_gallery_records_people_and_model(gallery, app_files):
    from kerasface.eval.embeddings import load_embedding_model
    from kerasface.faces.gallery import Gallery

    saved = Gallery.load(gallery)
    assert saved.names == ["eileen", "grace"] and saved.counts == [2, 2] and saved.flip
    assert saved.model == str(app_files["model"]) and saved.embeddings.shape == (2, 64)
    np.testing.assert_allclose(np.linalg.norm(saved.embeddings, axis=1), 1.0, atol=1e-5)
    saved.check_model(load_embedding_model(app_files["run"]))


def test_an_onnx_export_enrolls_the_people_as_the_keras_model_does(gallery, app_files):
    from kerasface.cli.identify import main
    from kerasface.eval.embeddings import load_embedding_model
    from kerasface.export.portable import export_portable
    from kerasface.faces.gallery import Gallery
    from kerasface.saving import load_model

    exported = app_files["root"] / "model.onnx"
    export_portable(load_model(app_files["model"], compile=False), exported, "onnx",
                    np.random.default_rng(0).uniform(0, 255, (2, 112, 112, 3)).astype(np.float32))
    out = app_files["root"] / "gallery-onnx.npz"
    assert main(["enroll", "--model", str(exported), "--gallery", str(app_files["people"]), "--out", str(out),
                 "--flip", "--quiet"]) == 0
    ours, theirs = Gallery.load(out), Gallery.load(gallery)
    assert ours.names == theirs.names and ours.model == str(exported)
    np.testing.assert_allclose(ours.embeddings, theirs.embeddings, atol=1e-4)
    theirs.check_model(load_embedding_model(exported))


def test_identifies_both_people_in_a_folder_of_images(gallery, app_files, capsys):
    from kerasface.cli.identify import main

    out = app_files["root"] / "found"
    assert main(["run", "--model", str(app_files["model"]), "--gallery", str(gallery), str(app_files["probes"]),
                 "--out", str(out), "--threshold", "0.8", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "threshold 0.800 (--threshold)" in err and "broken.jpg" in err
    records = {r["source"]: r for r in _log(out / "log.jsonl")}
    assert set(records) == {"pair.png", "nothing.png", "broken.jpg"}
    faces = records["pair.png"]["faces"]
    assert _names_left_to_right(faces) == ["eileen", "grace"]
    assert all(f["known"] and f["similarity"] >= 0.8 for f in faces)
    assert records["nothing.png"]["faces"] == []
    assert "broken.jpg: not a readable image" in records["broken.jpg"]["error"]
    probe, drawn = read_photo(app_files["probes"] / "pair.png"), read_photo(out / "pair.png")
    assert drawn.shape == probe.shape and np.abs(drawn.astype(int) - probe).max() > 100
    assert sorted(p.name for p in out.iterdir()) == ["log.jsonl", "nothing.png", "pair.png"]

    assert main(["run", "--model", str(app_files["model"]), "--gallery", str(gallery),
                 str(app_files["probes"] / "pair.png"), "--threshold", "0.9999", "--quiet"]) == 0
    (line,) = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [f["name"] for f in line["faces"]] == ["unknown", "unknown"]
    assert sorted(f["closest"] for f in line["faces"]) == ["eileen", "grace"]


def test_identifies_both_people_in_a_video_with_the_run_threshold(gallery, app_files, pair_image, capsys):
    from kerasface.cli.identify import main

    video = app_files["root"] / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (512, 300))
    for k in range(3):
        writer.write(cv2.cvtColor(_shifted(pair_image, 4 * k, 3 * k, 0.97), cv2.COLOR_RGB2BGR))
    writer.release()
    out = app_files["root"] / "video-out"
    assert main(["run", "--model", str(app_files["run"]), "--gallery", str(gallery), str(video),
                 "--out", str(out), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "threshold 0.800 (" in err and "report.json: test threshold 0.400" in err
    log = _log(out / "log.jsonl")
    assert [r["frame"] for r in log] == [0, 1, 2] and [r["time_s"] for r in log] == [0.0, 0.1, 0.2]
    assert all(_names_left_to_right(r["faces"]) == ["eileen", "grace"] for r in log)
    capture = cv2.VideoCapture(str(out / "clip.mp4"))
    frames = 0
    while capture.read()[0]:
        frames += 1
    assert frames == 3
    assert sorted(p.name for p in out.iterdir()) == ["clip.mp4", "log.jsonl"]


def test_bad_input_gives_one_error_line_and_writes_nothing(gallery, app_files, tmp_path, capsys):
    from kerasface.cli.identify import main

    other = _embedding_model(tmp_path / "other.keras", seed=1)
    (tmp_path / "junk.mp4").write_bytes(b"junk" * 100)
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 40)
    (tmp_path / "not-a-gallery.npz").write_bytes(b"PK nothing")
    (tmp_path / "empty-people").mkdir()
    out = tmp_path / "out"
    model, run = str(app_files["model"]), ["run", "--quiet", "--out", str(out)]
    cases = [
        (run + ["--model", str(other), "--gallery", str(gallery), str(app_files["probes"] / "pair.png")],
         "enrolled with another model"),
        (run + ["--model", model, "--gallery", str(gallery), str(tmp_path / "corrupt.png")],
         "corrupt.png: not a readable image"),
        (run + ["--model", model, "--gallery", str(gallery), str(tmp_path / "junk.mp4")],
         "junk.mp4: cannot open the video"),
        (run + ["--model", model, "--gallery", str(gallery), "7"], "camera 7: cannot open it"),
        (run + ["--model", model, "--gallery", str(tmp_path / "not-a-gallery.npz"), str(tmp_path)],
         "not-a-gallery.npz: not a gallery file"),
        (run + ["--model", model, "--gallery", str(gallery), str(tmp_path)], "must lie outside the input folder"),
        (["enroll", "--quiet", "--model", model, "--gallery", str(tmp_path / "empty-people"), "--out",
          str(out / "g.npz")], "empty-people: empty gallery folder"),
    ]
    for argv, message in cases:
        assert main(argv) == 1, argv
        captured = capsys.readouterr()
        assert message in _only_error_line(captured.err)
        assert "Traceback" not in captured.err
        assert not out.exists()


def test_threshold_from_the_run_report(tmp_path):
    from kerasface.faces.app import report_threshold

    assert report_threshold(tmp_path / "model.keras") is None
    (tmp_path / "report.json").write_text(json.dumps({"results": {
        "validation": {"validation_accuracy": 0.9, "validation_threshold": 1.0}, "test": {"threshold": 1.4}}}))
    similarity, where = report_threshold(tmp_path / "model.keras")
    assert similarity == pytest.approx(0.5) and "validation validation_threshold" in where
    (tmp_path / "report.json").write_text(json.dumps({"results": {"test": {"threshold": 1.4}}}))
    assert report_threshold(tmp_path)[0] == pytest.approx(0.3)


def test_detection_benchmark_compares_both_paths_on_the_same_photos(tmp_path, photos):
    from kerasface.benchmarks.detect import benchmark_detection, box_iou

    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)
    for name, image in photos.items():
        _write(tmp_path / name / "photo.jpg", image)
    result = benchmark_detection(tmp_path, limit=2, batch_size=2, warmup=1)
    assert result["images"] == 2 and result["plain_loop_images_per_s"] > 0 and result["kit_images_per_s"] > 0
    assert result["agreement"]["same_face_count"] == 1.0 and result["agreement"]["largest_box_iou"]["mean"] > 0.8
    eyes = result["eye_error_px"]
    assert eyes["residual"]["count"] == 4 and eyes["residual"]["max"] < EYE_TOLERANCE_PX
    assert eyes["redetected"]["found_again"] == 2 and eyes["redetected"]["max"] < EYE_TOLERANCE_PX


def test_a_gallery_saved_with_an_index_identifies_through_it(gallery, app_files, detector):
    pytest.importorskip("faiss")
    from kerasface.cli.identify import _parser
    from kerasface.eval.embeddings import load_embedding_model
    from kerasface.faces.app import Identifier
    from kerasface.faces.gallery import Gallery

    assert _parser().parse_args(["enroll", "--model", "m", "--gallery", "g", "--out", "o", "--index"]).index == "hnsw"
    saved = Gallery.load(gallery)
    assert saved.index is None
    saved.build_index("hnsw")
    indexed = app_files["root"] / "indexed.npz"
    saved.save(indexed)
    loaded = Gallery.load(indexed)
    assert loaded.index.kind == "hnsw"
    identify = Identifier(load_embedding_model(app_files["model"]), loaded, detector, threshold=0.8)
    assert _names_left_to_right(identify(read_photo(app_files["probes"] / "pair.png"))) == ["eileen", "grace"]
