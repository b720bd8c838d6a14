import cv2
import numpy as np
import pytest
import tensorflow as tf

from kerasface.data.augment import AugmentConfig, augment_image, rotate
from kerasface.data.crops import crop_offsets, make_views, multi_crop
from kerasface.data.pipeline import InputConfig, build_pipeline
from kerasface.data.readers import read_image_folder
from kerasface.data.tfrecord import read_tfrecords, select_samples, write_tfrecords

NO_AUGMENT = dict(max_rotation=0, flip=False, brightness=0, contrast=0, noise_sigma=0)


def _coordinates(height, width):
    """Pixel (y, x) holds y in channel 0 and x in channel 1."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    return tf.constant(np.stack([ys, xs, np.zeros_like(ys)], -1))


def test_crop_offsets():
    assert crop_offsets(64, 56) == (0, 4, 8)
    assert crop_offsets(10, 10) == (0, 0, 0)
    with pytest.raises(ValueError):
        crop_offsets(10, 11)


@pytest.mark.parametrize("positions", ["horizontal", "vertical"])
def test_multi_crop_geometry(positions):
    image = _coordinates(40, 50)
    crops = multi_crop(image, 30, positions)
    corners = [(int(c[0, 0, 0]), int(c[0, 0, 1])) for c in crops]
    if positions == "horizontal":
        assert corners == [(5, 0), (5, 10), (5, 20)]
    else:
        assert corners == [(0, 10), (5, 10), (10, 10)]
    for crop in crops:
        assert crop.shape == (30, 30, 3)
        np.testing.assert_array_equal(np.diff(crop.numpy()[..., 1], axis=1), 1.0)


def test_single_view_is_centre_crop():
    view = make_views(_coordinates(40, 40), 32, "single").numpy()
    assert view.shape == (32, 32, 3) and view[0, 0, 0] == 4 and view[0, 0, 1] == 4


def test_rotate_90_degrees_matches_numpy():
    image = np.random.default_rng(0).uniform(0, 255, (9, 9, 3)).astype(np.float32)
    out = rotate(tf.constant(image), np.pi / 2).numpy()
    np.testing.assert_allclose(out, np.rot90(image, k=1), atol=1e-3)
    np.testing.assert_allclose(rotate(tf.constant(image), 0.0).numpy(), image, atol=1e-4)


def test_noise_sigma_is_five_percent_of_range():
    image = tf.fill([128, 128, 3], 128.0)
    out = augment_image(image, tf.constant([1, 2]), AugmentConfig(**{**NO_AUGMENT, "noise_sigma": 0.05})).numpy()
    residual = out - 128.0
    assert abs(residual.std() - 0.05 * 255) < 0.03 * 0.05 * 255
    assert abs(residual.mean()) < 0.2


def test_augment_is_seeded_and_clipped():
    image = tf.constant(np.random.default_rng(1).uniform(0, 255, (32, 32, 3)).astype(np.float32))
    config = AugmentConfig(max_rotation=50, brightness=0.5, contrast=0.5)
    a = augment_image(image, tf.constant([3, 4]), config).numpy()
    b = augment_image(image, tf.constant([3, 4]), config).numpy()
    c = augment_image(image, tf.constant([5, 4]), config).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.min() >= 0 and a.max() <= 255
    with pytest.raises(ValueError):
        AugmentConfig(max_rotation=200)


def _epoch(dataset):
    xs, ys = [], []
    for x, y in dataset:
        xs.append(np.stack([v.numpy() for v in x], 1) if isinstance(x, tuple) else x.numpy())
        ys.append(y.numpy())
    return np.concatenate(xs), np.concatenate(ys)


def test_pipeline_views_targets_and_determinism(image_folder):
    _, spec = read_image_folder(image_folder)
    config = InputConfig(image_size=28, views="crops-horizontal", crop_fraction=0.875)
    assert config.base_shape == (32, 32)

    def make(seed):
        return build_pipeline(spec, input_config=config, target="identity", batch_size=5,
                              training=True, augment=AugmentConfig(max_rotation=30), seed=seed)

    first = make(7)
    x1, y1 = _epoch(first)
    assert x1.shape == (12, 3, 28, 28, 3) and sorted(y1.tolist()) == [0] * 4 + [1] * 4 + [2] * 4
    x1b, y1b = _epoch(first)
    assert not np.array_equal(x1, x1b)  # a new epoch reshuffles and re-augments
    x2, y2 = _epoch(make(7))
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    x3, _ = _epoch(make(8))
    assert not np.array_equal(x1, x3)


def test_evaluation_pipeline_has_no_augmentation_and_keeps_order(image_folder):
    _, spec = read_image_folder(image_folder)
    config = InputConfig(image_size=32, views="single")
    dataset = build_pipeline(spec, input_config=config, target="identity", batch_size=4,
                             training=False, augment=AugmentConfig())
    x, y = _epoch(dataset)
    np.testing.assert_array_equal(y, spec.samples.identity)
    again, _ = _epoch(dataset)
    np.testing.assert_array_equal(x, again)
    cached = build_pipeline(spec, input_config=config, target="identity", batch_size=4, cache=True)
    np.testing.assert_array_equal(_epoch(cached)[0], x)


def test_tfrecord_round_trip_equals_files(image_folder, tmp_path, snapshot):
    _, spec = read_image_folder(image_folder)
    before = snapshot(image_folder)
    out = write_tfrecords(spec, tmp_path / "records", num_shards=3, progress=False)
    assert snapshot(image_folder) == before
    assert not list(out.glob(".*tmp"))
    _, loaded = read_tfrecords(out)
    assert loaded.class_names == spec.class_names and loaded.storage == "tfrecord"
    np.testing.assert_array_equal(loaded.samples.identity, spec.samples.identity)
    config = InputConfig(image_size=32, views="crops-vertical", crop_fraction=0.8)
    by_path = {}
    for x, y in build_pipeline(loaded, input_config=config, target="identity", batch_size=1):
        by_path[len(by_path)] = (np.stack([v.numpy()[0] for v in x]), int(y[0]))
    files_x, files_y = _epoch(build_pipeline(spec, input_config=config, target="identity", batch_size=12))
    record_x = np.stack([v[0] for v in by_path.values()])
    # shards interleave the order: compare as multisets via sorted per-sample sums
    assert sorted(record_x.sum(axis=(1, 2, 3, 4)).round(2).tolist()) == sorted(
        files_x.sum(axis=(1, 2, 3, 4)).round(2).tolist())
    with pytest.raises(FileExistsError):
        write_tfrecords(spec, out, progress=False)


def test_tfrecord_select_samples(image_folder, tmp_path):
    _, spec = read_image_folder(image_folder)
    dataset, loaded = read_tfrecords(write_tfrecords(spec, tmp_path / "r", num_shards=2, progress=False))
    chosen = loaded.samples.subset(np.flatnonzero(loaded.samples.identity == 1))
    paths = sorted(r["path"].decode() for r in select_samples(dataset, chosen).as_numpy_iterator())
    assert paths == sorted(chosen.paths.tolist()) and len(paths) == 4


def test_modality_tiles_become_three_panels_without_geometric_augmentation(tmp_path):
    root = tmp_path / "tiles"
    for i in range(2):
        (root / f"id_{i}").mkdir(parents=True)
        for k in range(3):
            tile = np.concatenate([np.full((20, 20, 3), v, np.uint8) for v in (40 + k, 120 + k, 200 + k)], axis=1)
            tile[:, :3] = 0  # an asymmetric mark: a flip or rotation would move it across panels
            assert cv2.imwrite(str(root / f"id_{i}" / f"{k}.png"), tile)
    _, spec = read_image_folder(root)
    config = InputConfig(image_size=10, views="modalities", resize_mode="stretch")
    assert config.base_shape == (10, 30)
    augment = AugmentConfig(max_rotation=45, flip=True, brightness=0.3, contrast=0.3, noise_sigma=0.0)
    albedo, normal, depth = next(iter(build_pipeline(spec, input_config=config, target=None, batch_size=6,
                                                     training=True, augment=augment)))
    assert albedo.shape == normal.shape == depth.shape == (6, 10, 10, 3)
    np.testing.assert_allclose((normal - albedo).numpy()[:, :, 2:], 80.0, atol=1.0)
    assert np.all(albedo.numpy()[:, :, 0] < 10.0)
    np.testing.assert_allclose(depth.numpy() - normal.numpy(), 80.0, atol=1.0)
    with pytest.raises(ValueError, match="tile"):
        make_views(tf.zeros([10, 20, 3]), 10, "modalities")


def test_flip_swaps_the_labels_that_name_a_side_on_real_demo_files(tmp_path):
    """The demo's pose=left/right labels follow a flipped image; every other label stays."""
    from kerasface.datasets.demo import DemoConfig, generate_demo_dataset
    from kerasface.data.readers import read_dataset

    config = DemoConfig(identities=6, images_per_identity=8, image_size=32, photometric=False, seed=3,
                        pose_probabilities={"frontal": 0.2, "left": 0.4, "right": 0.4})
    _, spec = read_dataset(generate_demo_dataset(tmp_path / "demo", config, progress=False), verify="none")
    names = spec.label_names
    left, right = names.index("pose=left"), names.index("pose=right")
    assert spec.label_mirror.pairs == (("pose=left", "pose=right"),)
    only_flip = AugmentConfig(**{**NO_AUGMENT, "flip": True})
    common = dict(input_config=InputConfig(32, "single"), batch_size=64, shuffle=False)
    plain_x, plain_y = next(iter(build_pipeline(spec, **common)))
    aug_x, aug_y = next(iter(build_pipeline(spec, training=True, augment=only_flip, **common)))
    plain_x, plain_y, aug_x, aug_y = (np.asarray(t) for t in (plain_x, plain_y, aug_x, aug_y))
    flipped = np.array([np.array_equal(a, p[:, ::-1]) and not np.array_equal(a, p)
                        for a, p in zip(aug_x, plain_x)])
    unchanged = np.array([np.array_equal(a, p) for a, p in zip(aug_x, plain_x)])
    assert (flipped | unchanged).all() and flipped.any() and unchanged.any()
    sided = (plain_y[:, left] + plain_y[:, right]) > 0
    assert (flipped & sided).any()
    np.testing.assert_array_equal(aug_y[unchanged], plain_y[unchanged])
    np.testing.assert_array_equal(aug_y[flipped][:, left], plain_y[flipped][:, right])
    np.testing.assert_array_equal(aug_y[flipped][:, right], plain_y[flipped][:, left])
    others = [j for j in range(len(names)) if j not in (left, right)]
    np.testing.assert_array_equal(aug_y[:, others], plain_y[:, others])
    _, identity = next(iter(build_pipeline(spec, target="identity", training=True, augment=only_flip, **common)))
    np.testing.assert_array_equal(np.asarray(identity), spec.samples.identity)


def test_label_mirror_of_binary_and_one_hot_columns():
    from kerasface.data.spec import label_mirror

    mirror = label_mirror({"gender": ["female", "male"], "pose": ["frontal", "left", "right"],
                           "gaze": ["Left", "Right"]})
    y = np.array([[1, 0, 1, 0, 1]], np.float32)  # male, pose=left, gaze=Right
    np.testing.assert_array_equal(mirror.apply(y), [[1, 0, 0, 1, 0]])
    assert label_mirror({"gender": ["female", "male"]}) is None
