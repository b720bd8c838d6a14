"""IJB-B / IJB-C template verification (1:1) and identification (1:N), as insightface computes
them (``recognition/_evaluation_/ijb``: ``ijb_11.py``, ``ijb_1n.py``).

The dataset's own layout (``ijbc_`` files for IJB-C, ``ijbb_`` for IJB-B)::

    DIR/loose_crop/<name>                       the crops
    DIR/meta/ijbc_name_5pts_score.txt           name x1 y1 ... x5 y5 detector_score   (one line per crop)
    DIR/meta/ijbc_face_tid_mid.txt              name template_id media_id             (same crops, same order)
    DIR/meta/ijbc_template_pair_label.txt       template_id template_id label          (1:1)
    DIR/meta/ijbc_1N_gallery_G1.csv, _G2.csv    TEMPLATE_ID,SUBJECT_ID,...  (header)   (1:N; IJB-B: _S1, _S2)
    DIR/meta/ijbc_1N_probe_mixed.csv

Each crop is aligned by its 5 points onto the ArcFace template of the model's input size and
embedded (``f(x) + f(mirror(x))`` with the flip test), without normalisation; with the detector
score each embedding is multiplied by it. A template's feature is the sum over its media of the
mean of that media's embeddings, L2-normalised (``image2template_feature``); a pair's score is
the cosine of its two templates.

1:1: ROC of the pair scores (``sklearn.metrics.roc_curve`` as called there), its AUC, and at
each FAR of ``IJB_FARS`` the TAR of the ROC point whose FAR is nearest (``nearest_tar_at_far``).

1:N as ``ijb_1n.py``: one gallery of the templates of both gallery files; a probe's rank is the
number of gallery templates scoring at least as high as its mate (its subject's template);
rank-k = fraction of probes with rank <= k. With Q probes, the threshold at FPIR f is the
``ceil(Q f)``-th largest non-mate score over all probe-gallery pairs, and TPIR is the fraction
of probes whose mate scores above it. Also reported, per gallery file (the probes of subjects
absent from it are the non-mated ones) and averaged over the two: rank-k of the mated probes and
TPIR at FPIR as ``kerasface.eval.identification.open_set`` (top non-mate score above the
threshold at most f of the time, mate at rank 1 above it).
"""

from __future__ import annotations

import csv
import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kerasface.errors import BadInputError
from kerasface.eval.verification import far_key, l2_normalize, nearest_tar_at_far

IJB_FARS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
FPIRS = (0.01, 0.1)
RANKS = (1, 5, 10)
SETS = ("IJBB", "IJBC")
CHUNK_SIZE = 4096
CHUNK_NAME = "chunk-{:06d}.npy"
MANIFEST = "manifest.json"
PAIR_BLOCK = 100_000
POOL_BLOCK = 16_384


def meta_files(set_name: str) -> dict[str, str]:
    """File names under ``meta/`` of ``IJBB`` or ``IJBC``, by role."""
    prefix = set_name.lower()
    galleries = ("G1", "G2") if set_name == "IJBC" else ("S1", "S2")
    return {"landmarks": f"{prefix}_name_5pts_score.txt", "media": f"{prefix}_face_tid_mid.txt",
            "pairs": f"{prefix}_template_pair_label.txt",
            "gallery1": f"{prefix}_1N_gallery_{galleries[0]}.csv",
            "gallery2": f"{prefix}_1N_gallery_{galleries[1]}.csv",
            "probes": f"{prefix}_1N_probe_mixed.csv"}


def detect_set(root) -> str:
    """``IJBB`` or ``IJBC``, from which ``meta/*_face_tid_mid.txt`` is present."""
    root = Path(root)
    found = [name for name in SETS if (root / "meta" / meta_files(name)["media"]).is_file()]
    if len(found) == 1:
        return found[0]
    if found:
        raise BadInputError(f"{root}/meta: holds both IJB-B and IJB-C files; choose one with --ijb-set")
    raise BadInputError(
        f"{root / 'meta'}: neither {meta_files('IJBC')['media']} nor {meta_files('IJBB')['media']} found; "
        "expected an IJB-B or IJB-C folder (meta/, loose_crop/)")


@dataclasses.dataclass
class IJBSet:
    """The crops of an IJB set with their landmarks (N, 5, 2), detector scores, template and
    media ids, and the paths of its meta files by role (those present)."""

    name: str
    root: Path
    crops: list[str]
    landmarks: np.ndarray
    detector_scores: np.ndarray
    templates: np.ndarray
    medias: np.ndarray
    files: dict[str, Path]

    @property
    def crop_paths(self) -> list[str]:
        folder = self.root / "loose_crop"
        return [str(folder / name) for name in self.crops]


def _lines(path: Path) -> list[tuple[int, list[str]]]:
    with open(path, encoding="utf-8") as handle:
        rows = [(number, line.split()) for number, line in enumerate(handle, 1)]
    rows = [(number, fields) for number, fields in rows if fields]
    if not rows:
        raise BadInputError(f"{path}: empty file")
    return rows


def _numbers(path: Path, number: int, fields: Sequence[str], kind=float) -> list:
    try:
        return [kind(f) for f in fields]
    except ValueError:
        raise BadInputError(f"{path}, line {number}: expected numbers, got {' '.join(fields)!r}") from None


def _required(path: Path) -> Path:
    if not path.is_file():
        raise BadInputError(f"{path}: missing (IJB meta file)")
    return path


def load_ijb(root, set_name: str | None = None, check_crops: bool = True) -> IJBSet:
    """The crops and meta files of an IJB-B or IJB-C folder (``set_name`` detected when None)."""
    root = Path(root)
    if not root.is_dir():
        raise NotADirectoryError(f"{root}: no such IJB folder")
    set_name = set_name or detect_set(root)
    if set_name not in SETS:
        raise BadInputError(f"IJB set {set_name!r}: choose one of {', '.join(SETS)}")
    files = {role: root / "meta" / name for role, name in meta_files(set_name).items()}
    landmark_rows = _lines(_required(files["landmarks"]))
    media_rows = _lines(_required(files["media"]))
    if len(landmark_rows) != len(media_rows):
        raise BadInputError(
            f"{files['landmarks']} lists {len(landmark_rows)} crops but {files['media']} {len(media_rows)}; "
            "they must list the same crops in the same order")
    crops, landmarks, scores, templates, medias = [], [], [], [], []
    for (number, fields), (media_number, media_fields) in zip(landmark_rows, media_rows):
        if len(fields) != 12:
            raise BadInputError(
                f"{files['landmarks']}, line {number}: expected 'name x1 y1 ... x5 y5 score' (12 fields), "
                f"got {len(fields)}")
        if len(media_fields) != 3:
            raise BadInputError(
                f"{files['media']}, line {media_number}: expected 'name template_id media_id', got "
                f"{' '.join(media_fields)!r}")
        if media_fields[0] != fields[0]:
            raise BadInputError(
                f"{files['media']}, line {media_number}: crop {media_fields[0]!r}, but line {number} of "
                f"{files['landmarks']} is {fields[0]!r}; both files must list the crops in the same order")
        values = _numbers(files["landmarks"], number, fields[1:])
        if not np.all(np.isfinite(values)):
            raise BadInputError(f"{files['landmarks']}, line {number}: landmarks and score must be finite numbers")
        crops.append(fields[0])
        landmarks.append(values[:10])
        scores.append(values[10])
        template, media = _numbers(files["media"], media_number, media_fields[1:], int)
        templates.append(template)
        medias.append(media)
    ijb = IJBSet(set_name, root, crops, np.array(landmarks, np.float64).reshape(-1, 5, 2),
                 np.array(scores, np.float64), np.array(templates, np.int64), np.array(medias, np.int64),
                 {role: path for role, path in files.items() if path.is_file()})
    if check_crops:
        for number, path in zip((n for n, _ in landmark_rows), ijb.crop_paths):
            if not Path(path).is_file():
                raise BadInputError(f"{files['landmarks']}, line {number}: crop {path} not found")
    return ijb


def read_pairs(path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(template1, template2, label) of ``*_template_pair_label.txt``."""
    path = _required(Path(path))
    try:
        table = np.loadtxt(path, dtype=np.int64, ndmin=2)
    except ValueError as error:
        raise BadInputError(f"{path}: {str(error).splitlines()[0]}") from None
    if table.shape[1] != 3 or not len(table):
        raise BadInputError(f"{path}: expected lines 'template_id template_id label', got {table.shape[1]} columns")
    labels = table[:, 2]
    if not np.isin(labels, (0, 1)).all():
        raise BadInputError(f"{path}, line {int(np.argmax(~np.isin(labels, (0, 1)))) + 1}: label must be 0 or 1")
    if labels.all() or not labels.any():
        raise BadInputError(f"{path}: all {len(labels)} pairs have label {labels[0]}; the ROC needs both")
    return table[:, 0], table[:, 1], labels


def read_template_subjects(path) -> tuple[np.ndarray, np.ndarray]:
    """Each template of a 1:N CSV (``TEMPLATE_ID,SUBJECT_ID,...`` after a header), sorted, with
    its subject (of its first row)."""
    path = _required(Path(path))
    rows = []
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        next(reader, None)
        for row in reader:
            if any(cell.strip() for cell in row):
                if len(row) < 2:
                    raise BadInputError(f"{path}, line {reader.line_num}: expected TEMPLATE_ID,SUBJECT_ID,...")
                rows.append(_numbers(path, reader.line_num, row[:2], int))
    if not rows:
        raise BadInputError(f"{path}: no templates under the header")
    table = np.array(rows, np.int64)
    templates, first = np.unique(table[:, 0], return_index=True)
    return templates, table[first, 1]


# features

def _crop_dataset(paths: Sequence[str], matrices: np.ndarray, size: tuple[int, int], batch_size: int):
    """``tf.data`` of float32 (B, H, W, 3) batches of crops warped by their 2x3 matrices."""
    import tensorflow as tf

    from kerasface.data.decode import decode_image
    from kerasface.faces.align import warp

    def load(path, matrix):
        image = decode_image(tf.io.read_file(path), dtype=tf.uint8)
        face = tf.numpy_function(lambda i, m: warp(i, m, size), [image, matrix], tf.uint8, stateful=False)
        return tf.cast(tf.ensure_shape(face, [*size, 3]), tf.float32)

    return (tf.data.Dataset.from_tensor_slices((list(paths), matrices))
            .map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .batch(batch_size)
            .prefetch(tf.data.AUTOTUNE))


def _check_manifest(folder: Path, expected: dict) -> None:
    import json

    from kerasface.fileio import jsonable, write_json_atomic

    path = folder / MANIFEST
    expected = jsonable(expected)
    if not path.is_file():
        write_json_atomic(path, expected)
        return
    found = json.loads(path.read_text())
    differ = sorted(key for key in set(found) | set(expected) if found.get(key) != expected.get(key))
    if differ:
        details = ", ".join(f"{k} {found.get(k)!r} there, {expected.get(k)!r} now" for k in differ)
        raise BadInputError(
            f"{folder}: holds features of another run ({details}); delete it or give another features folder")


def _load_chunk(path: Path, rows: int) -> np.ndarray:
    try:
        vectors = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as error:
        raise BadInputError(f"{path}: unreadable feature chunk ({error}); delete it to embed it again") from None
    if vectors.ndim != 2 or len(vectors) != rows or vectors.dtype != np.float32:
        raise BadInputError(
            f"{path}: {vectors.dtype} {vectors.shape}, expected float32 ({rows}, dim); delete it to embed it again")
    return vectors


def embed_crops(model, paths: Sequence[str], landmarks: np.ndarray, folder, flip: bool = False,
                batch_size: int = 64, chunk_size: int = CHUNK_SIZE, progress: bool = True,
                run: dict | None = None) -> np.ndarray:
    """float32 (N, D) embeddings (not normalised) of ``paths`` aligned by their ``landmarks``.

    They are computed ``chunk_size`` crops at a time and kept as ``folder/chunk-000000.npy``,
    ... (written atomically); chunks already there are read, not embedded again, so an
    interrupted run resumes where it stopped. ``folder/manifest.json`` records the model, flip,
    crop count, chunk size and ``run`` (e.g. the landmark file's hash): a folder of another run
    is refused."""
    import tensorflow as tf

    from kerasface.eval.embeddings import _undecodable, embed_batches, load_embedding_model
    from kerasface.faces.align import alignment_matrix
    from kerasface.fileio import atomic_write
    from kerasface.progress import progress_bar

    model = load_embedding_model(model)
    landmarks = np.asarray(landmarks, np.float64)
    if len(landmarks) != len(paths):
        raise BadInputError(f"{len(paths)} crops but {len(landmarks)} landmark sets")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _check_manifest(folder, {"model": model.name, "image_size": list(model.image_size), "flip": bool(flip),
                             "crops": len(paths), "chunk_size": int(chunk_size), **(run or {})})
    out = None
    bar = progress_bar(total=len(paths), desc="IJB crops", enabled=progress)
    try:
        for index, start in enumerate(range(0, len(paths), chunk_size)):
            stop = min(start + chunk_size, len(paths))
            path = folder / CHUNK_NAME.format(index)
            if path.is_file():
                vectors = _load_chunk(path, stop - start)
            else:
                chunk = list(paths[start:stop])
                matrices = np.stack([alignment_matrix(points, model.image_size) for points in landmarks[start:stop]])

                def on_error(first, last, error, chunk=chunk):
                    if isinstance(error, tf.errors.OpError):
                        return _undecodable(chunk, first, last, True, error)
                    return error

                vectors = embed_batches(model, _crop_dataset(chunk, matrices, model.image_size, batch_size)
                                        .as_numpy_iterator(), len(chunk), batch_size, flip=flip,
                                        progress=progress, desc=f"chunk {index}", on_error=on_error)
                atomic_write(path, lambda fh, v=vectors: np.save(fh, v, allow_pickle=False), binary=True)
            if out is None:
                out = np.empty((len(paths), vectors.shape[1]), np.float32)
            elif vectors.shape[1] != out.shape[1]:
                raise BadInputError(f"{path}: {vectors.shape[1]}-dim features, the other chunks {out.shape[1]}")
            out[start:stop] = vectors
            bar.update(stop - start)
    finally:
        bar.close()
    return out


# pooling and scores

def template_features(features: np.ndarray, templates: Sequence, medias: Sequence,
                      weights: Sequence | None = None) -> tuple[np.ndarray, np.ndarray]:
    """insightface's ``image2template_feature``: the sorted template ids and, per template,
    ``normalize(sum_m mean_{i in m} w_i f_i)`` over its media m (float64, zero rows kept)."""
    features = np.asarray(features)
    templates, medias = np.asarray(templates), np.asarray(medias)
    if features.ndim != 2 or not len(templates) == len(medias) == len(features):
        raise BadInputError(
            f"features {features.shape}, {len(templates)} template ids and {len(medias)} media ids: expected one "
            "id of each per feature row")
    weights = np.ones(len(features)) if weights is None else np.asarray(weights, np.float64)
    unique_templates, template_index = np.unique(templates, return_inverse=True)
    _, media_index = np.unique(medias, return_inverse=True)
    _, group, counts = np.unique(template_index * (media_index.max() + 1) + media_index, return_inverse=True,
                                 return_counts=True)
    coefficients = weights / counts[group]
    order = np.argsort(template_index, kind="stable")
    sums = np.zeros((len(unique_templates), features.shape[1]))
    for start in range(0, len(order), POOL_BLOCK):
        rows = order[start:start + POOL_BLOCK]
        ids = template_index[rows]
        firsts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
        values = features[rows].astype(np.float64) * coefficients[rows, None]
        sums[ids[firsts]] += np.add.reduceat(values, firsts, axis=0)
    return unique_templates, l2_normalize(sums)


def template_rows(unique_templates: np.ndarray, wanted: np.ndarray, source) -> np.ndarray:
    """Row of each of ``wanted`` in ``unique_templates``; a template without crops names ``source``."""
    rows = np.searchsorted(unique_templates, wanted)
    rows = np.minimum(rows, len(unique_templates) - 1)
    missing = unique_templates[rows] != wanted
    if missing.any():
        raise BadInputError(f"{source}: template {int(np.asarray(wanted)[missing][0])} has no crop in the media list")
    return rows


def pair_scores(template_feats: np.ndarray, rows1: np.ndarray, rows2: np.ndarray) -> np.ndarray:
    """Cosine of each pair of (normalised) template features, ``PAIR_BLOCK`` pairs at a time."""
    scores = np.empty(len(rows1))
    for start in range(0, len(rows1), PAIR_BLOCK):
        a, b = template_feats[rows1[start:start + PAIR_BLOCK]], template_feats[rows2[start:start + PAIR_BLOCK]]
        scores[start:start + PAIR_BLOCK] = np.einsum("ij,ij->i", a, b)
    return scores


@dataclasses.dataclass
class IJBVerification:
    auc: float
    tar_at_far: dict[str, float]
    num_pairs: int
    num_positive: int
    num_negative: int
    num_templates: int
    fpr: np.ndarray = dataclasses.field(repr=False, default=None)
    tpr: np.ndarray = dataclasses.field(repr=False, default=None)

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("fpr", "tpr")}


def verify(labels: np.ndarray, scores: np.ndarray, num_templates: int = 0) -> IJBVerification:
    """ROC, AUC and TAR at each of ``IJB_FARS`` (``nearest_tar_at_far``) of scored pairs."""
    from sklearn.metrics import auc, roc_curve

    labels = np.asarray(labels)
    positives = int(labels.sum())
    if not positives or positives == len(labels):
        raise BadInputError(f"{positives} genuine and {len(labels) - positives} impostor pairs: the ROC needs both")
    fpr, tpr, _ = roc_curve(labels, scores)
    return IJBVerification(float(auc(fpr, tpr)), {far_key(f): nearest_tar_at_far(fpr, tpr, f) for f in IJB_FARS},
                           len(labels), positives, len(labels) - positives, num_templates, fpr, tpr)


def _top_values(values: np.ndarray, k: int) -> np.ndarray:
    return values if len(values) <= k else np.partition(values, len(values) - k)[len(values) - k:]


def gallery_mates(probe_subjects, gallery_subjects, source: str = "the gallery") -> np.ndarray:
    """The gallery row of each probe's subject; each must have exactly one (``gen_mask``)."""
    probe_subjects, gallery_subjects = np.asarray(probe_subjects), np.asarray(gallery_subjects)
    order = np.argsort(gallery_subjects, kind="stable")
    found = np.searchsorted(gallery_subjects[order], probe_subjects)
    counts = np.searchsorted(gallery_subjects[order], probe_subjects, side="right") - found
    if (counts != 1).any():
        bad = int(np.argmax(counts != 1))
        raise BadInputError(
            f"{source}: probe subject {int(probe_subjects[bad])} has {int(counts[bad])} templates there; each "
            "probe's subject needs exactly one")
    return order[found]


def insightface_identification(probe_feats, probe_subjects, gallery_feats, gallery_subjects,
                               fpirs: Sequence[float] = FPIRS, ranks: Sequence[int] = RANKS,
                               block: int = 2048) -> dict:
    """``ijb_1n.py``'s ``evaluation``: rank-k and TPIR at FPIR of probes that each have exactly one
    mate in the gallery (see the module's docstring)."""
    from kerasface.eval.identification import _ranks

    mates = gallery_mates(probe_subjects, gallery_subjects)
    needed = [math.ceil(len(probe_subjects) * f) for f in fpirs]
    if max(needed) > len(probe_subjects) * (len(gallery_subjects) - 1):
        raise BadInputError(f"{len(probe_subjects)} probes and {len(gallery_subjects)} gallery templates: too few "
                            f"non-mate scores for FPIR {min(fpirs)}")
    probe_feats, gallery_feats = np.asarray(probe_feats, np.float64), np.asarray(gallery_feats, np.float64)
    rank_of = np.empty(len(probe_subjects), np.int64)
    mate_scores = np.empty(len(probe_subjects))
    top = np.empty(0)
    for start in range(0, len(probe_subjects), block):
        similarity = probe_feats[start:start + block] @ gallery_feats.T
        rows = np.arange(len(similarity))
        truth = mates[start:start + block]
        rank_of[start:start + block] = _ranks(similarity, truth)
        mate_scores[start:start + block] = similarity[rows, truth]
        non_mate = np.ones(similarity.shape, bool)
        non_mate[rows, truth] = False
        top = _top_values(np.concatenate([top, similarity[non_mate]]), max(needed))
    top = np.sort(top)[::-1]
    out = {f"rank{k}": float(np.mean(rank_of <= k)) for k in ranks}
    thresholds = {far_key(f): float(top[k - 1]) for f, k in zip(fpirs, needed)}
    out["tpir_at_fpir"] = {key: float(np.mean(mate_scores > t)) for key, t in thresholds.items()}
    out["thresholds"] = thresholds
    out["num_probes"], out["num_gallery"] = len(probe_subjects), len(gallery_subjects)
    return out


def gallery_identification(probe_feats, probe_subjects, gallery_feats, gallery_subjects,
                           fpirs: Sequence[float] = FPIRS, ranks: Sequence[int] = RANKS) -> dict:
    """Rank-k of the mated probes and open-set TPIR at FPIR (``identification.open_set``) against
    one gallery; the probes of other subjects are the non-mated ones."""
    from kerasface.eval.identification import closed_set, open_set

    closed = closed_set(gallery_feats, gallery_subjects, probe_feats, probe_subjects)
    out = {f"rank{k}": float(closed.cmc[min(k, len(closed.cmc)) - 1]) for k in ranks}
    opened = open_set(gallery_feats, gallery_subjects, probe_feats, probe_subjects, fars=fpirs)
    out["tpir_at_fpir"], out["thresholds"] = opened.dir_at_far, opened.thresholds
    out["num_mated"], out["num_non_mated"] = opened.num_known, opened.num_unknown
    return out


def _mean_of(results: Sequence[dict]) -> dict:
    out = {key: float(np.mean([r[key] for r in results])) for key in results[0] if key.startswith("rank")}
    keys = set.intersection(*(set(r["tpir_at_fpir"]) for r in results))
    out["tpir_at_fpir"] = {k: float(np.mean([r["tpir_at_fpir"][k] for r in results])) for k in sorted(keys)}
    return out


def identification_lists(ijb: IJBSet, unique_templates: np.ndarray) -> dict:
    """The 1:N files of ``ijb`` read and checked: per role (``gallery1``, ``gallery2``, ``probes``,
    and ``joined`` for both galleries as one) the templates, their subjects and their rows in
    ``unique_templates``."""
    lists = {}
    for role in ("gallery1", "gallery2", "probes"):
        if role not in ijb.files:
            raise BadInputError(f"{ijb.root / 'meta' / meta_files(ijb.name)[role]}: missing (IJB 1:N meta file)")
        templates, subjects = read_template_subjects(ijb.files[role])
        lists[role] = (templates, subjects, template_rows(unique_templates, templates, ijb.files[role]))
    both = np.concatenate([lists["gallery1"][0], lists["gallery2"][0]])
    joined, first = np.unique(both, return_index=True)
    subjects = np.concatenate([lists["gallery1"][1], lists["gallery2"][1]])[first]
    lists["joined"] = (joined, subjects, template_rows(unique_templates, joined, ijb.files["gallery1"]))
    gallery_mates(lists["probes"][1], subjects,
                  f"{ijb.files['gallery1'].name} and {ijb.files['gallery2'].name}")
    return lists


def identify(ijb: IJBSet, lists: dict, template_feats: np.ndarray) -> dict:
    """1:N figures (``identification_lists``): ``insightface`` (both galleries as one) and
    ``galleries`` (each gallery file, and their ``mean``)."""
    _, probe_subjects, probe_rows = lists["probes"]
    probe_feats = template_feats[probe_rows]
    _, joined_subjects, joined_rows = lists["joined"]
    out = {"insightface": insightface_identification(probe_feats, probe_subjects, template_feats[joined_rows],
                                                     joined_subjects), "galleries": {}}
    for role in ("gallery1", "gallery2"):
        _, subjects, rows = lists[role]
        out["galleries"][ijb.files[role].stem.rsplit("_", 1)[-1]] = gallery_identification(
            probe_feats, probe_subjects, template_feats[rows], subjects)
    out["galleries"]["mean"] = _mean_of(list(out["galleries"].values()))
    return out


@dataclasses.dataclass
class IJBResult:
    set_name: str
    verification: IJBVerification
    identification: dict | None
    num_crops: int
    detector_score: bool

    def to_dict(self) -> dict:
        return {"set": self.set_name, "num_crops": self.num_crops, "detector_score": self.detector_score,
                "verification": self.verification.to_dict(), "identification": self.identification}


def evaluate_ijb(model, ijb: IJBSet, features_dir, flip: bool = False, detector_score: bool = True,
                 batch_size: int = 64, chunk_size: int = CHUNK_SIZE, progress: bool = True,
                 run: dict | None = None) -> IJBResult:
    """1:1 (and 1:N when the gallery and probe files are there) figures of ``model`` on ``ijb``;
    crop features are kept in ``features_dir`` (``embed_crops``). The pair and 1:N files are
    read and checked before any crop is embedded."""
    if "pairs" not in ijb.files:
        raise BadInputError(f"{ijb.root / 'meta' / meta_files(ijb.name)['pairs']}: missing (IJB meta file)")
    first, second, labels = read_pairs(ijb.files["pairs"])
    unique_templates = np.unique(ijb.templates)
    rows1 = template_rows(unique_templates, first, ijb.files["pairs"])
    rows2 = template_rows(unique_templates, second, ijb.files["pairs"])
    has_1n = any(role in ijb.files for role in ("gallery1", "gallery2", "probes"))
    lists = identification_lists(ijb, unique_templates) if has_1n else None
    features = embed_crops(model, ijb.crop_paths, ijb.landmarks, features_dir, flip=flip, batch_size=batch_size,
                           chunk_size=chunk_size, progress=progress, run=run)
    weights = ijb.detector_scores if detector_score else None
    _, template_feats = template_features(features, ijb.templates, ijb.medias, weights)
    del features
    verification = verify(labels, pair_scores(template_feats, rows1, rows2), len(unique_templates))
    identification = identify(ijb, lists, template_feats) if has_1n else None
    return IJBResult(ijb.name, verification, identification, len(ijb.crops), detector_score)


def ijb_table(results: dict[str, IJBResult]) -> str:
    """insightface's TPR@FPR table (percent, two decimals), one row per method."""
    from tabulate import tabulate

    rows = [[name] + [f"{100 * r.verification.tar_at_far[far_key(f)]:.2f}" for f in IJB_FARS]
            for name, r in results.items()]
    return tabulate(rows, headers=["Methods"] + [str(f) for f in IJB_FARS], tablefmt="github",
                    disable_numparse=True)


def identification_table(results: dict[str, IJBResult]) -> str:
    """Rank-k and TPIR@FPIR (percent) of each method: insightface's joined gallery and the mean of the two."""
    from tabulate import tabulate

    rows = []
    for name, r in results.items():
        if r.identification is None:
            continue
        for protocol, figures in (("insightface", r.identification["insightface"]),
                                  ("gallery mean", r.identification["galleries"]["mean"])):
            tpir = figures["tpir_at_fpir"]
            rows.append([name, protocol] + [f"{100 * figures[f'rank{k}']:.2f}" for k in RANKS]
                        + ["-" if far_key(f) not in tpir else f"{100 * tpir[far_key(f)]:.2f}" for f in FPIRS])
    return tabulate(rows, headers=["Methods", "gallery"] + [f"rank-{k}" for k in RANKS]
                    + [f"TPIR@FPIR={f}" for f in FPIRS], tablefmt="github", disable_numparse=True)


def ijb_roc_figure(results: dict[str, IJBResult]):
    """The ROC curves (TAR against log FAR from 1e-6 to 0.1) as insightface plots them."""
    from kerasface.eval.figures import new_figure

    figure = new_figure()
    ax = figure.add_subplot()
    for name, r in results.items():
        v = r.verification
        ax.plot(v.fpr, v.tpr, linewidth=1, label=f"[{name} (AUC = {100 * v.auc:.4f} %)]")
    ax.set_xscale("log")
    ax.set_xlim(IJB_FARS[0], IJB_FARS[-1])
    ax.set_ylim(0.3, 1.0)
    ax.set_xticks(IJB_FARS)
    ax.set_yticks(np.linspace(0.3, 1.0, 8))
    ax.grid(linestyle="--", linewidth=1)
    ax.set_xlabel("False Positive Rate")
    ax.set_ylabel("True Positive Rate")
    ax.set_title(f"ROC on {'/'.join(sorted({r.set_name for r in results.values()}))}")
    ax.legend(loc="lower right")
    return figure
