"""What an evaluation's figures depend on, recorded in its JSON so that two figures can be
compared, or refused as incomparable: the sha256 of every pair or meta file, the model's input
preprocessing and alignment (``kerasface.models.preprocessing``), how images were resized and
at what size, the flip test, the protocol and the kit's version.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

COMPARED = ("protocol", "kerasface_version", "flip", "detector_score", "resize_mode", "alignment")


def sha256_file(path, block: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def provenance(model, files: Mapping[str, str | Path], flip: bool, protocol: str, **settings) -> dict:
    """The record of an evaluation of ``model`` (an ``EmbeddingModel``) on ``files`` (name ->
    path); ``settings`` are other switches of the protocol (``detector_score``)."""
    import kerasface

    preprocessing = getattr(model, "preprocessing", None)
    return {
        "protocol": protocol, "kerasface_version": kerasface.__version__, "flip": bool(flip),
        "image_size": list(model.image_size), "resize_mode": model.resize_mode,
        "alignment": (preprocessing or {}).get("alignment"), "preprocessing": preprocessing,
        "files": {name: {"path": str(path), "sha256": sha256_file(path)} for name, path in files.items()},
        **settings,
    }  # fmt: skip


def comparable(a: Mapping, b: Mapping) -> tuple[bool, list[str]]:
    """Whether the figures of two evaluation JSONs can be compared, and the reasons they cannot:
    a setting of ``COMPARED`` that differs, or a data file of one name whose content differs or
    that only one has. Differences of the models themselves (their value range, input size) are
    what is compared, so not reasons."""
    first, second = a.get("provenance"), b.get("provenance")
    if first is None or second is None:
        return False, ["no provenance record in " + ("both" if first is second else "the first" if first is None
                                                     else "the second")]
    reasons = [f"{key}: {first.get(key)!r} against {second.get(key)!r}" for key in COMPARED
               if first.get(key) != second.get(key)]
    files1, files2 = first.get("files", {}), second.get("files", {})
    for name in sorted(set(files1) | set(files2)):
        if name not in files1 or name not in files2:
            reasons.append(f"{name}: evaluated in {'the second' if name not in files1 else 'the first'} only")
        elif files1[name]["sha256"] != files2[name]["sha256"]:
            reasons.append(f"{name}: different files ({files1[name]['path']} sha256 {files1[name]['sha256'][:12]}, "
                           f"{files2[name]['path']} sha256 {files2[name]['sha256'][:12]})")
    return not reasons, reasons
