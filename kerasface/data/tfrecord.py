"""TFRecord shards: a dataset's encoded images with identity and labels, for fast streaming.

A TFRecord folder holds ``shard-00000-of-0000N.tfrecord`` files and ``spec.json`` (class
names, label vocabularies and the sample table), written last, so a folder without it is
incomplete. Each record stores the original file bytes (no re-encoding), its source path, the
identity index and the label vector.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import tensorflow as tf

from kerasface.errors import BadInputError
from kerasface.progress import progress_bar
from kerasface.fileio import atomic_path, write_text_atomic
from kerasface.data.spec import DatasetSpec, Samples

TFRECORD_SPEC = "spec.json"

FEATURES = {
    "image": tf.io.FixedLenFeature([], tf.string),
    "path": tf.io.FixedLenFeature([], tf.string),
    "identity": tf.io.FixedLenFeature([], tf.int64),
    "labels": tf.io.VarLenFeature(tf.float32),
}


def _example(image: bytes, path: str, identity: int, labels: np.ndarray) -> bytes:
    feature = {
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image])),
        "path": tf.train.Feature(bytes_list=tf.train.BytesList(value=[path.encode()])),
        "identity": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(identity)])),
        "labels": tf.train.Feature(float_list=tf.train.FloatList(value=labels.tolist())),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def write_tfrecords(spec: DatasetSpec, out_dir, num_shards: int = 4, samples: Samples | None = None,
                    progress: bool = True) -> Path:
    """Write ``samples`` (default: all of ``spec``) into ``out_dir``; each shard goes to a
    temporary name first and is renamed when complete, ``spec.json`` last."""
    samples = samples if samples is not None else spec.samples
    out_dir = Path(out_dir).expanduser().resolve()
    if (out_dir / TFRECORD_SPEC).exists():
        raise FileExistsError(f"{out_dir}: already holds a TFRecord dataset ({TFRECORD_SPEC})")
    out_dir.mkdir(parents=True, exist_ok=True)
    num_shards = max(1, min(num_shards, len(samples)))
    bar = progress_bar(total=len(samples), desc="writing TFRecords", enabled=progress)
    for shard in range(num_shards):
        name = f"shard-{shard:05d}-of-{num_shards:05d}.tfrecord"
        with atomic_path(out_dir / name) as tmp, tf.io.TFRecordWriter(str(tmp)) as writer:
            for i in range(shard, len(samples), num_shards):
                path = str(samples.paths[i])
                with open(path, "rb") as handle:
                    writer.write(_example(handle.read(), path, samples.identity[i], samples.labels[i]))
                bar.update(1)
    bar.close()
    meta = {
        "source": spec.source,
        "class_names": spec.class_names,
        "label_columns": spec.label_columns,
        "num_shards": num_shards,
        "paths": [str(p) for p in samples.paths],
        "identity": samples.identity.tolist(),
        "labels": samples.labels.tolist(),
    }
    write_text_atomic(out_dir / TFRECORD_SPEC, json.dumps(meta))
    return out_dir


def is_remote(path) -> bool:
    """A URL of a file system TensorFlow reads (``gs://bucket/...``, ``s3://``, ``ram://``)."""
    return "://" in str(path)


def read_tfrecords(folder) -> tuple[tf.data.Dataset, DatasetSpec]:
    """A dataset of ``{"image", "path", "identity", "labels"}`` records and the stored spec.
    ``folder`` may be local or remote (``gs://bucket/shards``: read through ``tf.io.gfile``, as
    a TPU reads its input)."""
    folder = str(folder).rstrip("/") if is_remote(folder) else str(Path(folder).expanduser().resolve())
    spec_path = f"{folder}/{TFRECORD_SPEC}"
    if not tf.io.gfile.exists(spec_path):
        raise BadInputError(f"{folder}: no {TFRECORD_SPEC}; not a complete TFRecord dataset")
    try:
        with tf.io.gfile.GFile(spec_path) as handle:
            meta = json.loads(handle.read())
        samples = Samples(meta["paths"], meta["identity"],
                          np.asarray(meta["labels"], np.float32).reshape(len(meta["paths"]), -1))
    except (ValueError, KeyError) as error:
        raise BadInputError(f"{spec_path}: unreadable spec ({error})") from error
    shards = shard_files(folder)
    if len(shards) != meta["num_shards"]:
        raise BadInputError(
            f"{folder}: expected {meta['num_shards']} shards, found {len(shards)}"
        )
    spec = DatasetSpec(folder, samples, meta["class_names"], meta["label_columns"],
                       storage="tfrecord")
    return tfrecord_dataset(shards, samples.labels.shape[1]), spec


def shard_files(folder: str) -> list[str]:
    """The ``shard-*.tfrecord`` files of a TFRecord folder, local or remote, in order (a local
    folder's own name is never a pattern: it may hold ``[``)."""
    if is_remote(folder):
        return sorted(tf.io.gfile.glob(f"{str(folder).rstrip('/')}/shard-*.tfrecord"))
    return sorted(str(p) for p in Path(folder).glob("shard-*.tfrecord"))


def tfrecord_dataset(shards: list[str], num_labels: int, deterministic: bool = True) -> tf.data.Dataset:
    """Parsed records of ``shards``, read interleaved and in parallel."""
    def parse(record):
        example = tf.io.parse_single_example(record, FEATURES)
        labels = tf.sparse.to_dense(example["labels"])
        labels = tf.ensure_shape(labels, [num_labels])
        return {
            "image": example["image"],
            "path": example["path"],
            "identity": tf.cast(example["identity"], tf.int32),
            "labels": labels,
        }

    files = tf.data.Dataset.from_tensor_slices(shards)
    records = files.interleave(tf.data.TFRecordDataset, cycle_length=len(shards),
                               num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    return records.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)


def select_samples(dataset: tf.data.Dataset, samples: Samples) -> tf.data.Dataset:
    """Keep the records whose source path is in ``samples`` (a split of a TFRecord dataset)."""
    keys = tf.constant(samples.paths.astype(str))
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(keys, tf.ones_like(keys, dtype=tf.int32)), 0
    )
    return dataset.filter(lambda record: table.lookup(record["path"]) > 0)
