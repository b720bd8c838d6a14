import cv2
import numpy as np
import pytest
import tensorflow as tf

from kerasface.data.decode import base_size, decode_image, find_bad_images, resize_image


def _decode(path):
    return decode_image(tf.io.read_file(str(path))).numpy()


def test_decode_png_bmp_exact_and_rgb_order(tmp_path):
    bgr = np.random.default_rng(1).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    for ext in (".png", ".bmp"):
        cv2.imwrite(str(tmp_path / f"a{ext}"), bgr)
        out = _decode(tmp_path / f"a{ext}")
        assert out.dtype == np.float32 and out.shape == (20, 30, 3)
        np.testing.assert_array_equal(out, bgr[:, :, ::-1].astype(np.float32))


def test_grayscale_and_rgba_become_rgb(tmp_path):
    gray = np.random.default_rng(2).integers(0, 256, (16, 16), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "g.png"), gray)
    out = _decode(tmp_path / "g.png")
    assert out.shape == (16, 16, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], gray)
    bgra = np.random.default_rng(3).integers(0, 256, (16, 16, 4), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), bgra)
    out = _decode(tmp_path / "a.png")
    np.testing.assert_array_equal(out, bgra[:, :, 2::-1].astype(np.float32))


def test_resize_modes_geometry():
    image = tf.ones([50, 100, 3]) * 200.0
    padded = resize_image(image, 32, "pad").numpy()
    assert padded.shape == (32, 32, 3)
    # aspect 1:2 -> content 16 rows in the middle, zero bands above and below
    assert np.all(padded[:8] == 0) and np.all(padded[24:] == 0)
    np.testing.assert_allclose(padded[8:24], 200.0, atol=1e-3)
    stretched = resize_image(image, (20, 10), "stretch").numpy()
    assert stretched.shape == (20, 10, 3)
    ramp = tf.tile(tf.range(100, dtype=tf.float32)[None, :, None], [50, 1, 3])
    cropped = resize_image(ramp, 32, "crop").numpy()
    assert cropped.shape == (32, 32, 3)
    # shorter side 50 -> 32, scale 0.64; the centre 50 columns of 100 survive: values ~25..75
    assert 20 < cropped[0, 0, 0] < 30 and 70 < cropped[0, -1, 0] < 80
    with pytest.raises(ValueError, match="resize mode"):
        resize_image(image, 32, "squash")


def test_base_size():
    assert base_size(64, 1.0) == 64
    assert base_size(56, 0.875) == 64
    assert base_size(64, 0.8) == 80
    with pytest.raises(ValueError):
        base_size(64, 1.5)


def test_find_bad_images_names_each_problem(tmp_path):
    good = tmp_path / "good.jpg"
    cv2.imwrite(str(good), np.full((32, 32, 3), 100, np.uint8))
    data = good.read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image at all")
    # valid markers at both ends but garbage inside: only a full decode finds it
    (tmp_path / "garbage.jpg").write_bytes(data[:4] + b"\x00" * 200 + data[-2:])
    paths = [str(tmp_path / n) for n in
             ("good.jpg", "truncated.jpg", "empty.png", "text.png", "garbage.jpg", "missing.png")]
    header = find_bad_images(paths, verify="header")
    assert set(header) == {paths[1], paths[2], paths[3], paths[5]}
    assert "truncated" in header[paths[1]] and "empty" in header[paths[2]]
    assert "header" in header[paths[3]]
    full = find_bad_images(paths, verify="full")
    assert set(full) == set(header) | {paths[4]}
    assert "decode" in full[paths[4]]
    assert find_bad_images(paths, verify="none") == {}


@pytest.mark.parametrize("mode", ["pad", "stretch", "crop"])
def test_a_batch_is_resized_as_each_of_its_images(mode):
    batch = tf.constant(np.random.default_rng(4).uniform(0, 255, (2, 20, 30, 3)), tf.float32)
    together = resize_image(batch, (12, 10), mode).numpy()
    assert together.shape == (2, 12, 10, 3)
    for image, resized in zip(batch, together):
        np.testing.assert_allclose(resized, resize_image(image, (12, 10), mode).numpy(), atol=1e-4)
