"""MXNet RecordIO packs (insightface's train.rec / train.idx / property), real files on disk."""

import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from kerasface.data.pipeline import InputConfig, build_pipeline, source_dataset
from kerasface.data.readers import read_dataset, read_image_folder
from kerasface.data.recordio import (
    MAGIC, encode_record, pack_payload, read_recordio, spec_to_recordio, write_recordio,
)
from kerasface.errors import BadInputError

SIZE = 24


def _images(identities, per_identity=3, seed=0):
    """(BGR image, identity) pairs, identity by identity."""
    rng = np.random.default_rng(seed)
    return [(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8), identity)
            for identity in identities for _ in range(per_identity)]


def _png(image):
    ok, data = cv2.imencode(".png", image)
    assert ok
    return data.tobytes()


def _idx(folder):
    return [tuple(int(v) for v in line.split("\t")) for line in (folder / "train.idx").read_text().splitlines()]


def _decoded(spec, samples=None):
    config = InputConfig(image_size=SIZE, resize_mode="stretch")
    xs, ys = [], []
    for x, y in build_pipeline(spec, samples, input_config=config, target="identity", batch_size=4):
        xs.append(x.numpy())
        ys.append(y.numpy())
    return np.concatenate(xs), np.concatenate(ys)


def test_round_trip_through_the_pipeline(tmp_path, snapshot):
    originals = _images([10, 2, 7])  # class names sort numerically: 2, 7, 10
    out = write_recordio(tmp_path / "pack", ((_png(im), identity) for im, identity in originals))
    assert sorted(p.name for p in out.iterdir()) == ["property", "train.idx", "train.rec"]  # no temporaries
    assert (out / "property").read_text() == "11,112,112\n"
    before = snapshot(out)

    dataset, spec = read_recordio(out)
    assert spec.storage == "recordio" and spec.class_names == ["2", "7", "10"]
    assert spec.identity_counts() == {"2": 3, "7": 3, "10": 3}
    assert spec.samples.paths[0] == f"{out / 'train.rec'}#1" and len(spec.samples) == 9
    names = [spec.class_names[i] for i in spec.samples.identity]
    assert names == [str(identity) for _, identity in originals]
    first = next(iter(dataset))
    assert first["path"].numpy().decode() == spec.samples.paths[0]
    assert first["image"].numpy() == _png(originals[0][0])

    x, y = _decoded(spec)
    np.testing.assert_array_equal(x, np.stack([im[..., ::-1] for im, _ in originals]).astype(np.float32))
    np.testing.assert_array_equal(y, spec.samples.identity)

    subset = spec.samples.subset([8, 0, 4])  # a split, in its own order
    images = [r["image"].numpy() for r in source_dataset(spec, subset)]
    assert images == [_png(originals[i][0]) for i in (8, 0, 4)]

    for path in (out, out / "train.rec"):
        _, again = read_dataset(path, verify="full", skip_bad=False)
        assert again.storage == "recordio" and list(again.samples.paths) == list(spec.samples.paths)
    assert snapshot(out) == before


def test_insightface_layout(tmp_path):
    out = write_recordio(tmp_path / "pack", [(b"img%d" % i, identity) for i, identity in enumerate([4, 4, 1, 1, 1])],
                         num_classes=5, image_size=(112, 96))
    assert (out / "property").read_text() == "5,112,96\n"
    index = _idx(out)
    assert [k for k, _ in index] == list(range(8)) and index[0] == (0, 0)
    data = (out / "train.rec").read_bytes()

    def payload(key):
        offset = dict(index)[key]
        magic, lrecord = struct.unpack_from("<II", data, offset)
        assert magic == MAGIC and lrecord >> 29 == 0
        return data[offset + 8: offset + 8 + (lrecord & (2**29 - 1))]

    header = payload(0)
    assert struct.unpack_from("<IfQQ", header) == (2, 0.0, 0, 0)
    assert np.frombuffer(header, "<f4", 2, 24).tolist() == [6.0, 8.0]  # images 1..5, identities 6..7
    assert struct.unpack_from("<IfQQ", payload(3)) == (0, 1.0, 3, 0) and payload(3)[24:] == b"img2"
    assert np.frombuffer(payload(6), "<f4", 2, 24).tolist() == [1.0, 3.0]  # identity 4: keys [1, 3)
    assert np.frombuffer(payload(7), "<f4", 2, 24).tolist() == [3.0, 6.0]
    _, spec = read_recordio(out)
    assert spec.class_names == ["1", "4"] and spec.samples.identity.tolist() == [1, 1, 0, 0, 0]


def test_label_arrays(tmp_path):
    """flag > 0: the labels follow the IRHeader and the identity is labels[0]."""
    originals = _images([0, 3], per_identity=2, seed=1)
    out = write_recordio(tmp_path / "pack", [(_png(im), [identity, 1.0, 0.5]) for im, identity in originals])
    data = (out / "train.rec").read_bytes()
    offset = dict(_idx(out))[2]
    flag, label, record_id, _ = struct.unpack_from("<IfQQ", data, offset + 8)
    assert (flag, label, record_id) == (3, 0.0, 2)
    assert np.frombuffer(data, "<f4", 3, offset + 32).tolist() == [0.0, 1.0, 0.5]
    _, spec = read_recordio(out)
    assert spec.class_names == ["0", "3"] and spec.samples.identity.tolist() == [0, 0, 1, 1]
    x, _ = _decoded(spec)
    np.testing.assert_array_equal(x, np.stack([im[..., ::-1] for im, _ in originals]).astype(np.float32))


def _record(payload: bytes) -> bytes:
    """A whole record built from the struct layout by hand."""
    pad = (-len(payload)) % 4
    return struct.pack("<II", 0xCED7230A, len(payload)) + payload + b"\0" * pad


def test_hand_built_records(tmp_path, snapshot):
    """Bytes laid out by hand (no header record: every key is an image, as in im2rec packs)."""
    image = _png(np.full((5, 7, 3), 200, np.uint8))
    assert len(image) % 4  # so the record needs padding
    payload = struct.pack("<IfQQ", 0, 3.0, 0, 0) + image
    first = _record(payload)
    assert first[:4] == bytes.fromhex("0a23d7ce") and first[4:8] == struct.pack("<I", len(payload))
    assert len(first) % 4 == 0 and first.endswith(b"\0" * ((-len(payload)) % 4))
    assert encode_record(pack_payload(3, image, 0)) == first  # the writer lays it out the same

    second = _record(struct.pack("<IfQQ", 2, 0.0, 5, 0) + struct.pack("<2f", 1.0, 9.0) + image)
    folder = tmp_path / "pack"
    folder.mkdir()
    (folder / "train.rec").write_bytes(first + second)
    (folder / "train.idx").write_text(f"0\t0\n5\t{len(first)}\n")
    before = snapshot(folder)
    _, spec = read_recordio(folder)
    assert spec.class_names == ["1", "3"] and spec.samples.identity.tolist() == [1, 0]
    assert [r["image"].numpy() for r in source_dataset(spec)] == [image, image]
    assert snapshot(folder) == before


def test_multi_part_records(tmp_path):
    """A payload holding the magic at 4-byte aligned positions is cut there, like mxnet does."""
    magic = struct.pack("<I", MAGIC)
    image = b"abcd" + magic + b"efgh" + magic + b"xyz" + magic  # aligned, aligned, unaligned
    payload = pack_payload(1, image, 1)
    parts = encode_record(payload)
    expected = (magic + struct.pack("<I", (1 << 29) | 28) + payload[:28]
                + magic + struct.pack("<I", (2 << 29) | 4) + b"efgh"
                + magic + struct.pack("<I", (3 << 29) | 7) + b"xyz" + magic + b"\0")
    assert parts == expected
    # the magic inside the IRHeader (id2) cuts the header itself
    header_cut = struct.pack("<IfQQ", 0, 2.0, 2, MAGIC) + b"img!"
    folder = tmp_path / "pack"
    folder.mkdir()
    records = [encode_record(payload), encode_record(header_cut), encode_record(pack_payload(1, magic * 3, 3))]
    assert struct.unpack_from("<I", records[1], 4)[0] == (1 << 29) | 16
    offsets = np.cumsum([0] + [len(r) for r in records])[:-1]
    (folder / "train.rec").write_bytes(b"".join(records))
    (folder / "train.idx").write_text("".join(f"{k}\t{o}\n" for k, o in zip([1, 2, 3], offsets)))
    _, spec = read_recordio(folder)
    assert spec.class_names == ["1", "2"] and spec.samples.identity.tolist() == [0, 1, 0]
    assert [r["image"].numpy() for r in source_dataset(spec)] == [image, b"img!", magic * 3]

    written = write_recordio(tmp_path / "written", [(image, 1), (magic * 3, 1)])
    _, spec = read_recordio(written)
    assert [r["image"].numpy() for r in source_dataset(spec)] == [image, magic * 3]


@pytest.fixture
def pack(tmp_path):
    return write_recordio(tmp_path / "pack", [(_png(im), identity) for im, identity in _images([0, 1], 2)])


def _error(folder, snapshot) -> str:
    before = snapshot(folder)
    with pytest.raises(BadInputError) as info:
        read_recordio(folder)
    assert snapshot(folder) == before
    return str(info.value)


def test_truncated_rec(pack, snapshot):
    index = _idx(pack)
    rec = pack / "train.rec"
    size = rec.stat().st_size
    last_key, last_offset = index[-1]  # the last identity range record
    rec.write_bytes(rec.read_bytes()[:last_offset + 12])
    message = _error(pack, snapshot)
    assert f"train.rec record {last_key} at byte {last_offset}: truncated" in message
    assert str(rec) in message

    image_key, image_offset = index[4]  # cut in the middle of the last image record
    assert size > image_offset + 40
    rec.write_bytes(rec.read_bytes()[:image_offset + 40])
    message = _error(pack, snapshot)
    assert f"train.rec record {image_key} at byte {image_offset}: truncated" in message
    assert "2 more bad record(s)" in message


def test_mismatched_idx(pack, snapshot):
    index = _idx(pack)
    idx = pack / "train.idx"
    wrong = [(k, o + 16 if k == 2 else o) for k, o in index]
    idx.write_text("".join(f"{k}\t{o}\n" for k, o in wrong))
    message = _error(pack, snapshot)
    assert f"train.rec record 2 at byte {index[2][1] + 16}: bad magic (idx and rec do not match?)" in message

    size = (pack / "train.rec").stat().st_size
    idx.write_text("".join(f"{k}\t{size + 100 if k == 3 else o}\n" for k, o in index))
    assert f"record 3 at byte {size + 100}: beyond the end of the file" in _error(pack, snapshot)

    idx.write_text("0\t0\n1\tzero\n")
    assert "train.idx: line 2" in _error(pack, snapshot)


def test_missing_files(pack, snapshot, tmp_path):
    (pack / "train.idx").rename(tmp_path / "elsewhere.idx")
    assert "train.idx: no such file" in _error(pack, snapshot)
    with pytest.raises(BadInputError, match="train.idx: no such file"):
        read_dataset(pack)  # a folder with train.rec goes to the RecordIO reader
    (tmp_path / "elsewhere.idx").rename(pack / "train.idx")
    (pack / "train.rec").unlink()
    assert "train.rec: no such file" in _error(pack, snapshot)
    with pytest.raises(FileExistsError):
        write_recordio(pack, [(b"x", 0)])


def test_spec_to_recordio(image_folder, tmp_path, snapshot):
    before = snapshot(image_folder)
    _, spec = read_image_folder(image_folder)
    out = spec_to_recordio(spec, tmp_path / "pack", progress=False)
    assert (out / "property").read_text() == "3,48,64\n"
    _, loaded = read_recordio(out)
    assert loaded.class_names == ["0", "1", "2"]
    assert loaded.samples.identity.tolist() == spec.samples.identity.tolist()
    stored = [r["image"].numpy() for r in source_dataset(loaded)]
    assert stored == [Path(p).read_bytes() for p in spec.samples.paths]  # the file bytes, unchanged
    with pytest.raises(ValueError, match="converts image files"):
        spec_to_recordio(loaded, tmp_path / "again")
    assert snapshot(image_folder) == before


def test_many_records_in_order(tmp_path):
    """More records than one read batch, read in parallel: order and count as in the samples."""
    n = 200
    out = write_recordio(tmp_path / "pack", [(b"image %d" % i, i % 7) for i in range(n)])
    _, spec = read_recordio(out)
    dataset = source_dataset(spec)
    assert int(dataset.cardinality()) == n
    records = list(dataset.as_numpy_iterator())
    assert [r["image"] for r in records] == [b"image %d" % i for i in range(n)]
    assert [spec.class_names[r["identity"]] for r in records] == [str(i % 7) for i in range(n)]
    order = np.random.default_rng(0).permutation(n)[:77]
    assert [r["image"] for r in source_dataset(spec, spec.samples.subset(order)).as_numpy_iterator()] == [
        b"image %d" % i for i in order]


def test_pack_changed_after_reading(pack):
    """The pipeline checks each record again as it reads it."""
    import tensorflow as tf

    _, spec = read_recordio(pack)
    rec = pack / "train.rec"
    key, offset = _idx(pack)[3]
    rec.write_bytes(rec.read_bytes()[:offset])
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"train.rec record {key} at byte {offset}"):
        list(source_dataset(spec).as_numpy_iterator())
