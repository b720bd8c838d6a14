"""Photometric stereo: albedo, normals and depth from K images under known lights, and the
"modalities" tiles built from them.

Frame: x right, y up, z towards the camera (the demo's ``LIGHT_FRAME``); image rows run down,
so y = -row. A Lambertian pixel with albedo a and unit normal n under unit light l_k reads

    I_k = a * (n . l_k) = l_k . g,    g = a * n.

On disk (``build_modality_dataset``), input ``DATA`` and output ``OUT``::

    DATA/lights.json                             {"lights": [[lx, ly, lz], ...]}
    DATA/photometric/<identity>/<n>/light_<k>.png   grayscale, k = 0..K-1
    DATA/attributes.csv                          optional: path,identity,... (path images/<identity>/<n>.png)
    OUT/images/<identity>/<n>.png                tile H x 3W: albedo | normal | depth
    OUT/attributes.csv                           the rows of the built samples, path -> the tile
    OUT/skipped.txt                              every sample or row left out and why (when any)
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import re
from pathlib import Path

import cv2
import numpy as np

from kerasface.data.spec import Skipped
from kerasface.progress import progress_bar
from kerasface.fileio import atomic_path, write_text_atomic

MODALITIES = ("albedo", "normal", "depth")
LIGHT_NAME = re.compile(r"light_(\d+)\.png")
MIN_NZ = 0.1
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def load_lights(path) -> np.ndarray:
    """The (K, 3) unit light directions of ``lights.json`` (``{"lights": [[lx, ly, lz], ...]}``, K >= 3)."""
    path = Path(path)
    try:
        lights = json.loads(path.read_text())["lights"]
        lights = np.array(lights, np.float64)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: cannot read the light directions ({type(error).__name__}: {error})") from error
    if lights.ndim != 2 or lights.shape[1] != 3:
        raise ValueError(f"{path}: 'lights' must be a list of [lx, ly, lz] triples, got shape {lights.shape}")
    if len(lights) < 3:
        raise ValueError(f"{path}: photometric stereo needs at least 3 lights, got {len(lights)}")
    norms = np.linalg.norm(lights, axis=1)
    bad = ~np.isfinite(norms) | (norms < 1e-12)
    if bad.any():
        k = int(np.argmax(bad))
        raise ValueError(f"{path}: light {k} is {lights[k].tolist()}; it must be finite and non-zero")
    return lights / norms[:, None]


def _as_float(images) -> np.ndarray:
    images = np.asarray(images)
    if np.issubdtype(images.dtype, np.integer):
        return images / float(np.iinfo(images.dtype).max)
    return images.astype(np.float64)


def photometric_stereo(images, lights, shadow_threshold: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Lambertian least squares (Woodham 1980): per pixel g = pinv(L) I, albedo = |g|, n = g / |g|.

    images: (K, H, W) in [0, 1] (integer images are divided by their dtype's maximum);
    lights: (K, 3) unit directions. With ``shadow_threshold``, readings below it are left out
    of a pixel's fit (g = pinv(L_lit) I_lit, one pseudo-inverse per pattern of lit lights),
    unless fewer than 3 remain. Returns albedo (H, W) and unit normals (H, W, 3); where the
    albedo is ~0 the normal is (0, 0, 1).
    """
    images, lights = _as_float(images), np.asarray(lights, np.float64)
    if images.ndim != 3 or lights.shape != (len(images), 3):
        raise ValueError(f"expected images (K, H, W) and lights (K, 3), got {images.shape} and {lights.shape}")
    k, h, w = images.shape
    readings = images.reshape(k, -1)
    g = np.linalg.pinv(lights) @ readings
    if shadow_threshold is not None:
        codes = ((readings >= shadow_threshold) << np.arange(k)[:, None]).sum(0)
        for code in np.unique(codes):
            lit = (code >> np.arange(k)) & 1 == 1
            if 3 <= lit.sum() < k:
                pixels = codes == code
                g[:, pixels] = np.linalg.pinv(lights[lit]) @ readings[lit][:, pixels]
    albedo = np.linalg.norm(g, axis=0)
    dark = albedo < 1e-9
    normals = g / np.where(dark, 1.0, albedo)
    normals[:, dark] = [[0.0], [0.0], [1.0]]
    return albedo.reshape(h, w), normals.T.reshape(h, w, 3)


def integrate_normals(normals) -> np.ndarray:
    """Depth (H, W), zero mean, from unit normals (H, W, 3) by Frankot-Chellappa (1988).

    The gradients p = dz/dx = -nx/nz and q = dz/dy = -ny/nz (nz clipped to ``MIN_NZ``, so
    grazing or noisy normals do not dominate) give dz/dcol = p, dz/drow = -q. The field is
    mirrored to (2H, 2W) so that it is periodic, and per frequency (u, v) (columns, rows)

        Z = (-i u P - i v Q_row) / (u^2 + v^2),    Z(0, 0) = 0.

    Larger depth is nearer the camera.
    """
    normals = np.asarray(normals, np.float64)
    nz = np.maximum(normals[..., 2], MIN_NZ)
    p, q_row = -normals[..., 0] / nz, normals[..., 1] / nz
    h, w = p.shape
    p = np.block([[p, -p[:, ::-1]], [p[::-1], -p[::-1, ::-1]]])
    q_row = np.block([[q_row, q_row[:, ::-1]], [-q_row[::-1], -q_row[::-1, ::-1]]])
    u = 2 * np.pi * np.fft.fftfreq(2 * w)[None, :]
    v = 2 * np.pi * np.fft.fftfreq(2 * h)[:, None]
    denominator = u**2 + v**2
    denominator[0, 0] = 1.0
    spectrum = (-1j * u * np.fft.fft2(p) - 1j * v * np.fft.fft2(q_row)) / denominator
    spectrum[0, 0] = 0.0
    depth = np.fft.ifft2(spectrum).real[:h, :w]
    return depth - depth.mean()


def _gray_rgb(values: np.ndarray) -> np.ndarray:
    return np.repeat(np.round(values * 255.0).astype(np.uint8)[..., None], 3, axis=-1)


def modality_images(albedo, normals, depth) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three uint8 (H, W, 3) RGB images: albedo clip(a, 0, 1) * 255 as gray; normals
    (n + 1) / 2 * 255 with RGB = xyz; depth min-max scaled to [0, 255] as gray (0 when flat)."""
    albedo, normals, depth = (np.asarray(a, np.float64) for a in (albedo, normals, depth))
    span = depth.max() - depth.min()
    depth = (depth - depth.min()) / span if span > 0 else np.zeros_like(depth)
    normal_rgb = np.round((np.clip(normals, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)
    return _gray_rgb(np.clip(albedo, 0.0, 1.0)), normal_rgb, _gray_rgb(depth)


def modality_tile(albedo_rgb, normal_rgb, depth_rgb) -> np.ndarray:
    """The (H, 3W, 3) uint8 tile albedo | normal | depth (the order of ``MODALITIES``)."""
    panels = [np.asarray(p) for p in (albedo_rgb, normal_rgb, depth_rgb)]
    shapes = {p.shape for p in panels}
    if len(shapes) != 1 or len(panels[0].shape) != 3 or panels[0].shape[2] != 3:
        raise ValueError(f"expected three equal (H, W, 3) images, got {[p.shape for p in panels]}")
    if any(p.dtype != np.uint8 for p in panels):
        raise ValueError(f"expected uint8 images, got {[str(p.dtype) for p in panels]}")
    return np.concatenate(panels, axis=1)


@dataclasses.dataclass
class ModalitySummary:
    """What ``build_modality_dataset`` did. ``skipped`` holds every sample (row None) and
    every CSV row (row = line number) left out, with the reason."""

    out_dir: Path
    written: int = 0
    reused: int = 0
    skipped: list[Skipped] = dataclasses.field(default_factory=list)
    csv_rows: int | None = None

    @property
    def skipped_samples(self) -> int:
        return sum(s.row is None for s in self.skipped)

    def __str__(self) -> str:
        counts = f"{self.written} tile(s) written, {self.reused} reused, {self.skipped_samples} skipped"
        lines = [f"{self.out_dir}: {counts}"]
        if self.csv_rows is not None:
            lines.append(f"attributes.csv: {self.csv_rows} row(s)")
        if self.skipped:
            lines.append(f"left out ({len(self.skipped)}), also listed in skipped.txt:")
            lines.extend(f"  {s}" for s in self.skipped)
        return "\n".join(lines)


def _read_png(path: Path) -> tuple[np.ndarray | None, str | None]:
    """(image, None), or (None, the reason it cannot be used)."""
    try:
        data = path.read_bytes()
    except OSError as error:
        return None, f"cannot read file ({error.strerror or error})"
    if not data.startswith(_PNG_SIGNATURE):
        return None, "not a PNG (unrecognised file header)"
    if b"IEND" not in data[-16:]:
        return None, "truncated PNG (no IEND chunk)"
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        return None, "corrupt PNG (does not decode)"
    return image, None


def _read_lights(folder: Path, num_lights: int) -> tuple[np.ndarray | None, Skipped | None]:
    """The (K, H, W) light images of one sample folder, or the reason it is skipped."""
    found = sorted((int(m[1]), f) for f in os.listdir(folder) if (m := LIGHT_NAME.fullmatch(f)))
    missing = sorted(set(range(num_lights)) - {k for k, _ in found})
    if missing:
        reason = f"missing light image ({len(missing)} of {num_lights} missing)"
        return None, Skipped(str(folder / f"light_{missing[0]}.png"), reason)
    if len(found) != num_lights:
        names = ", ".join(name for _, name in found)
        reason = f"{len(found)} light images ({names}) but lights.json has {num_lights} lights"
        return None, Skipped(str(folder), reason)
    images = []
    for _, name in found:
        image, reason = _read_png(folder / name)
        if reason:
            return None, Skipped(str(folder / name), reason)
        if image.ndim == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY if image.shape[2] == 4 else cv2.COLOR_BGR2GRAY)
        images.append(image)
    if len({a.shape for a in images}) > 1:
        sizes = ", ".join(f"{name} {a.shape[1]}x{a.shape[0]}" for (_, name), a in zip(found, images))
        return None, Skipped(str(folder), f"light images differ in size: {sizes}")
    if len({a.dtype for a in images}) > 1:
        return None, Skipped(str(folder), "light images differ in bit depth")
    return np.stack(images), None


def _write_png(path: Path, rgb: np.ndarray) -> None:
    with atomic_path(path) as temporary:
        if not cv2.imwrite(str(temporary), np.ascontiguousarray(rgb[..., ::-1])):
            raise OSError(f"could not write image {temporary}")


def _write_text(path: Path, text: str) -> None:
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return
    write_text_atomic(path, text)


def _is_tile(path: Path) -> bool:
    image, _ = _read_png(path)
    return image is not None and image.ndim == 3 and image.shape[2] == 3 and image.shape[1] % 3 == 0


def modality_tile_from_lights(images, lights, shadow_threshold: float | None = None) -> np.ndarray:
    """Photometric stereo, integration and the tile of one sample's (K, H, W) light images."""
    albedo, normals = photometric_stereo(images, lights, shadow_threshold)
    return modality_tile(*modality_images(albedo, normals, integrate_normals(normals)))


def _sample_folders(photometric: Path, skipped: list[Skipped]) -> list[tuple[str, str, Path]]:
    samples = []
    for identity in sorted(_visible(photometric)):
        entries = sorted(_visible(identity)) if identity.is_dir() else [identity]
        for folder in entries:
            if folder.is_dir():
                samples.append((identity.name, folder.name, folder))
            else:
                skipped.append(Skipped(str(folder), "file outside any sample folder photometric/<identity>/<n>/"))
    return samples


def _visible(folder: Path) -> list[Path]:
    """The entries of ``folder`` except hidden ones (``.DS_Store``, ``.ipynb_checkpoints``)."""
    return [entry for entry in folder.iterdir() if not entry.name.startswith(".")]


def _write_csv(source: Path, built: set[tuple[str, str]], reasons: dict, summary: ModalitySummary) -> None:
    """Copy the rows whose sample was built, with the path column pointing at the tile."""
    with open(source, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        if "path" not in header:
            raise ValueError(f"{source}: no column 'path'; columns are {header}")
        rows = [(reader.line_num, row) for row in reader]
    kept = []
    for line, row in rows:
        raw = (row["path"] or "").strip()
        key = (Path(raw).parent.name, Path(raw).stem)
        if key in built:
            kept.append({**row, "path": f"images/{key[0]}/{key[1]}.png"})
        else:
            reason = reasons.get(key, f"no photometric sample photometric/{key[0]}/{key[1]}/")
            summary.skipped.append(Skipped(str(source.parent / raw), reason, row=line))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(kept)
    _write_text(summary.out_dir / "attributes.csv", text.getvalue())
    summary.csv_rows = len(kept)


def build_modality_dataset(
    data_dir, out_dir, progress: bool = True, overwrite: bool = False, shadow_threshold: float | None = None
) -> ModalitySummary:
    """Write the albedo | normal | depth tile of every photometric sample of ``data_dir``.

    Reads ``data_dir`` only. Every file is written to a temporary name and renamed into
    place; a tile already in ``out_dir`` that decodes is reused unless ``overwrite``.
    Samples with a missing, extra, unreadable or differently sized light image are skipped
    and listed (with the CSV rows that point at them) in the summary and ``skipped.txt``.
    """
    data_dir, out_dir = Path(data_dir).expanduser().resolve(), Path(out_dir).expanduser().resolve()
    photometric, lights_path = data_dir / "photometric", data_dir / "lights.json"
    if not data_dir.is_dir():
        raise FileNotFoundError(f"{data_dir}: no such folder")
    if not lights_path.is_file() or not photometric.is_dir():
        raise FileNotFoundError(
            f"{data_dir}: no photometric-stereo data "
            "(expected lights.json and photometric/<identity>/<n>/light_<k>.png)"
        )
    if out_dir == data_dir or data_dir in out_dir.parents:
        raise ValueError(f"{out_dir}: the output folder must lie outside the input folder {data_dir}")
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"{out_dir}: exists and is not a folder; the output must be a folder")
    lights = load_lights(lights_path)
    skipped: list[Skipped] = []
    samples = _sample_folders(photometric, skipped)
    if not samples:
        raise FileNotFoundError(f"{photometric}: no sample folders (expected <identity>/<n>/light_<k>.png)")
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("images/*/.*.tmp.png"):
        stale.unlink()
    summary = ModalitySummary(out_dir, skipped=skipped)
    built, reasons = set(), {}
    for identity, n, folder in progress_bar(samples, desc="modality tiles", enabled=progress):
        target = out_dir / "images" / identity / f"{n}.png"
        if not overwrite and _is_tile(target):
            summary.reused += 1
            built.add((identity, n))
            continue
        images, problem = _read_lights(folder, len(lights))
        if problem:
            summary.skipped.append(problem)
            reasons[identity, n] = f"sample skipped: {problem}"
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        _write_png(target, modality_tile_from_lights(images, lights, shadow_threshold))
        summary.written += 1
        built.add((identity, n))
    if (data_dir / "attributes.csv").is_file():
        _write_csv(data_dir / "attributes.csv", built, reasons, summary)
    report = out_dir / "skipped.txt"
    if summary.skipped:
        _write_text(report, "".join(f"{s}\n" for s in summary.skipped))
    else:
        report.unlink(missing_ok=True)
    return summary
