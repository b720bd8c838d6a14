"""Dataset readers: an image folder (one sub-folder per identity) and a CSV of paths and labels.

Each reader returns ``(dataset, spec)``: a ``tf.data.Dataset`` of ``{"path", "identity",
"labels"}`` records and the ``DatasetSpec`` with the sample table, the vocabularies and every
file it skipped. Bad input raises ``BadInputError`` naming the file (and CSV row); with
``skip_bad=True`` it is left out, warned about and listed in ``spec.skipped`` instead.
Readers never write to the input folder.
"""

from __future__ import annotations

import csv
import os
import warnings
from pathlib import Path

import numpy as np
import tensorflow as tf

from kerasface.data.decode import IMAGE_EXTENSIONS, find_bad_images, is_image_name
from kerasface.data.recordio import IDX_NAME, REC_NAME, read_recordio
from kerasface.data.spec import MISSING_VALUE, DatasetSpec, Samples, Skipped, encode_labels
from kerasface.data.tfrecord import TFRECORD_SPEC, is_remote, read_tfrecords
from kerasface.errors import BadInputError


def samples_dataset(samples: Samples) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices(
        {
            "path": samples.paths.astype(str),
            "identity": samples.identity.astype(np.int32),
            "labels": samples.labels,
        }
    )


def _resolve_problems(problems: list[Skipped], skip_bad: bool, source: str) -> list[Skipped]:
    if not problems:
        return []
    if not skip_bad:
        listing = "\n  ".join(str(p) for p in problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise BadInputError(
            f"{source}: {len(problems)} unusable input(s):\n  {listing}{more}\n"
            "Fix or remove them, or pass skip_bad=True (--skip-bad) to leave them out."
        )
    warnings.warn(
        f"{source}: skipped {len(problems)} unusable input(s), first: {problems[0]}",
        stacklevel=3,
    )
    return problems


def read_image_folder(
    root, *, skip_bad: bool = False, verify: str = "full", progress: bool = False
) -> tuple[tf.data.Dataset, DatasetSpec]:
    """``root/<identity>/<image>``: the sub-folder name is the identity (sorted, indexed from 0).

    Entries that are no images by name (``pairs.txt``, ``Thumbs.db``, a README), hidden ones
    (``.DS_Store``, ``.ipynb_checkpoints``), nested folders, images outside any identity folder
    and identity folders without images are ignored and listed in ``spec.ignored``. Only image
    files that do not decode are bad input."""
    root = Path(root).expanduser().resolve()
    if not root.exists():
        raise BadInputError(f"{root}: no such folder")
    if not root.is_dir():
        raise BadInputError(f"{root}: not a folder; expected an image folder with one sub-folder per identity")
    ignored: list[Skipped] = []
    class_names, paths, identity = [], [], []
    for entry in visible_entries(root, ignored):
        if not entry.is_dir():
            reason = "image outside any identity folder" if is_image_name(entry.name) else "not an image by name"
            ignored.append(Skipped(entry.path, reason))
            continue
        images = []
        for f in visible_entries(entry.path, ignored):
            if f.is_dir():
                ignored.append(Skipped(f.path, "folder nested inside an identity folder"))
            elif is_image_name(f.name):
                images.append(f.path)
            else:
                ignored.append(Skipped(f.path, "not an image by name"))
        if not images:
            ignored.append(Skipped(entry.path, "identity folder without images"))
            continue
        class_names.append(entry.name)
        paths.extend(images)
        identity.extend([len(class_names) - 1] * len(images))
    if not paths:
        raise BadInputError(_no_images_message(root, ignored))
    bad = find_bad_images(paths, verify=verify, progress=progress)
    problems = [Skipped(p, bad[p]) for p in paths if p in bad]
    skipped = _resolve_problems(problems, skip_bad, str(root))
    keep = [i for i, p in enumerate(paths) if p not in bad]
    samples = Samples(
        np.array(paths, dtype=object)[keep] if keep else np.array([], dtype=object),
        np.array(identity, dtype=np.int64)[keep] if keep else np.zeros(0, np.int64),
        np.zeros((len(keep), 0), np.float32),
    )
    samples, class_names = _drop_emptied_identities(samples, class_names)
    if len(samples) == 0:
        raise BadInputError(f"{root}: none of the {len(paths)} image(s) decodes")
    spec = DatasetSpec(str(root), samples, class_names, {}, skipped, ignored=ignored)
    return samples_dataset(samples), spec


def visible_entries(folder, ignored: list[Skipped]) -> list[os.DirEntry]:
    """The entries of ``folder`` sorted by name; hidden ones go to ``ignored``."""
    entries = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name.startswith("."):
            ignored.append(Skipped(entry.path, "hidden"))
        else:
            entries.append(entry)
    return entries


def _no_images_message(root: Path, ignored: list[Skipped]) -> str:
    found = f"; ignored {len(ignored)} entr{'y' if len(ignored) == 1 else 'ies'}, e.g. " + ", ".join(
        Path(s.path).name for s in ignored[:3]) if ignored else " (the folder is empty)"
    return (
        f"{root}: no images found{found}. Expected an image folder with one sub-folder per "
        f"identity holding {'/'.join(e.lstrip('.').upper() for e in IMAGE_EXTENSIONS)} files "
        f"({root}/<identity>/<image>), a CSV file or a TFRecord folder."
    )


def _drop_emptied_identities(samples: Samples, class_names: list[str]):
    used = np.unique(samples.identity)
    if len(used) == len(class_names):
        return samples, class_names
    remap = -np.ones(len(class_names), np.int64)
    remap[used] = np.arange(len(used))
    return (
        Samples(samples.paths, remap[samples.identity], samples.labels),
        [class_names[i] for i in used],
    )


def read_csv(
    csv_path,
    *,
    path_column: str = "path",
    identity_column: str | None = "identity",
    label_columns: list[str] | None = None,
    label_vocabulary: dict[str, list[str]] | None = None,
    class_names: list[str] | None = None,
    root=None,
    skip_bad: bool = False,
    verify: str = "full",
    progress: bool = False,
    missing_labels: bool = False,
) -> tuple[tf.data.Dataset, DatasetSpec]:
    """A CSV with a path column, an optional identity column and label columns (multi-label).

    Paths are relative to ``root`` (default: the CSV's folder). ``label_columns`` defaults to
    every other column. Vocabularies are the sorted distinct values unless
    ``label_vocabulary`` fixes them (e.g. the training set's), in which case a value outside
    it is bad input. Rows are numbered as lines of the file (the header is line 1). An empty
    label cell is bad input, unless ``missing_labels``: then it is a missing value, NaN in that
    column's outputs (``kerasface.losses.masked`` leaves it out of the column's loss and AUC).
    """
    csv_path = Path(csv_path).expanduser().resolve()
    if not csv_path.is_file():
        raise BadInputError(f"{csv_path}: no such CSV file")
    root = Path(root).expanduser().resolve() if root is not None else csv_path.parent
    with open(csv_path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        rows = [(reader.line_num, row) for row in reader]
    for column in [path_column] + ([identity_column] if identity_column else []):
        if column not in header:
            raise BadInputError(f"{csv_path}: no column {column!r}; columns are {header}")
    if label_columns is None:
        label_columns = [c for c in header if c not in (path_column, identity_column)]
    missing = [c for c in label_columns if c not in header]
    if missing:
        raise BadInputError(f"{csv_path}: no label column(s) {missing}; columns are {header}")

    problems: list[Skipped] = []
    good = []
    for line, row in rows:
        raw = (row.get(path_column) or "").strip()
        path = str(root / raw) if raw else ""
        reason = None
        if not raw:
            reason = f"empty {path_column!r} value"
        elif not os.path.isfile(path):
            reason = f"file named in column {path_column!r} does not exist"
        else:
            for column in label_columns + ([identity_column] if identity_column else []):
                value = (row.get(column) or "").strip()
                if value == "" and missing_labels and column in label_columns:
                    continue
                if value == "":
                    reason = f"empty value in column {column!r}"
                    break
                vocab = (label_vocabulary or {}).get(column)
                if vocab is not None and value not in vocab:
                    reason = f"unknown value {value!r} in column {column!r} (known: {vocab})"
                    break
        if reason:
            problems.append(Skipped(path or raw, reason, row=line))
        else:
            good.append((line, path, {k: (v or "").strip() for k, v in row.items() if k}))

    bad = find_bad_images([p for _, p, _ in good], verify=verify, progress=progress)
    problems.extend(Skipped(p, bad[p], row=line) for line, p, _ in good if p in bad)
    problems.sort(key=lambda s: s.row or 0)
    skipped = _resolve_problems(problems, skip_bad, str(csv_path))
    good = [g for g in good if g[1] not in bad]
    if not good:
        raise BadInputError(f"{csv_path}: no usable rows")

    vocab = {
        c: list((label_vocabulary or {}).get(c) or sorted({r[c] for _, _, r in good} - {MISSING_VALUE}))
        for c in label_columns
    }
    single = [c for c, v in vocab.items() if len(v) < 2]
    if single and label_vocabulary is None:
        warnings.warn(f"{csv_path}: label column(s) {single} hold a single value", stacklevel=2)
    if identity_column:
        names = list(class_names) if class_names is not None else sorted({r[identity_column] for _, _, r in good})
        index = {n: i for i, n in enumerate(names)}
        identity = [index.get(r[identity_column], -1) for _, _, r in good]
    else:
        names, identity = [], [-1] * len(good)
    labels = encode_labels(vocab, [r for _, _, r in good])
    samples = Samples(np.array([p for _, p, _ in good], dtype=object), identity, labels)
    spec = DatasetSpec(str(csv_path), samples, names, vocab, skipped)
    return samples_dataset(samples), spec


def read_dataset(path, **kwargs) -> tuple[tf.data.Dataset, DatasetSpec]:
    """Pick the reader from what ``path`` is: a CSV file, a TFRecord folder (``spec.json``
    beside ``*.tfrecord`` shards), an MXNet RecordIO pack (a folder holding ``train.rec`` /
    ``train.idx``, or a ``.rec`` file) or an image folder. A folder holding ``attributes.csv``
    (such as the demo dataset) is read through that CSV. A URL (``gs://bucket/shards``) is a
    TFRecord folder on remote storage."""
    if is_remote(path):
        kwargs = {k: v for k, v in kwargs.items() if k not in ("verify", "skip_bad", "progress", "missing_labels")}
        return read_tfrecords(str(path), **kwargs)
    path = Path(path).expanduser()
    if path.is_file() and path.suffix.lower() == ".csv":
        return read_csv(path, **kwargs)
    if (path.is_file() and path.suffix.lower() == ".rec") or (
            path.is_dir() and ((path / REC_NAME).is_file() or (path / IDX_NAME).is_file())):
        kwargs = {k: v for k, v in kwargs.items() if k not in ("verify", "skip_bad", "progress", "missing_labels")}
        return read_recordio(path, **kwargs)
    if path.is_dir() and (path / TFRECORD_SPEC).is_file():
        kwargs = {k: v for k, v in kwargs.items() if k not in ("verify", "skip_bad", "progress", "missing_labels")}
        return read_tfrecords(path, **kwargs)
    if path.is_dir() and (path / "attributes.csv").is_file():
        return read_csv(path / "attributes.csv", **kwargs)
    if path.is_dir():
        folder = path / "images" if (path / "images").is_dir() else path
        kwargs = {k: v for k, v in kwargs.items() if k in ("skip_bad", "verify", "progress")}
        return read_image_folder(folder, **kwargs)
    if not path.exists():
        raise BadInputError(f"{path}: no such file or folder")
    raise BadInputError(f"{path}: not a dataset; expected an image folder, a CSV file, a TFRecord folder "
                        "or a RecordIO pack")
