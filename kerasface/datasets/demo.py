"""A synthetic face dataset, rendered deterministically from a seed, in the formats users bring.

Every identity is a height field on the image grid (an ellipsoid head with eye sockets, brow
ridge, nose, lips, cheeks and chin whose positions and sizes are identity-specific) and an
albedo texture (identity-specific low-frequency skin pattern and moles, eyebrows, lips, iris,
hairline, beard style). Each image poses that geometry (in-plane rotation, shift, scale, yaw
for the ``left``/``right`` poses), applies the per-image attributes (expression, spectacles,
occluder, facial hair) and shades it with the Lambertian model

    I = gain * albedo * max(0, n . l) + ambient,

where n is the unit normal of the height field H, n ~ (-dH/dx, -dH/dy, 1), and l the unit light
direction, both in the frame x right, y up, z towards the camera. The RGB image uses one
random light and the RGB albedo; the photometric-stereo renders use the same surface, the
luminance of the albedo and the fixed lights of ``lights.json``. Gaussian blur and gaussian
noise are applied last. Skin tone and hair colour belong to the identity, as a person's do, and
vary a little from image to image (tone by up to 0.08 of its range, white balance and hair
brightness by up to 8-10%); background colour and light gain are drawn per image from one
shared distribution and carry no identity.

On disk (``DIR``)::

    images/<identity>/<n>.png                    RGB, image_size x image_size
    photometric/<identity>/<n>/light_<k>.png     grayscale, one per light
    attributes.csv                               path,identity,gender,emotion,pose,...
    lights.json                                  {"lights": [[lx, ly, lz], ...]}
    manifest.json                                written last: parameters, counts, version

Pose ``left`` turns the face so that the nose points to the image's left, ``right`` to its right.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import math
import os
import shutil
import uuid
from pathlib import Path

import cv2
import numpy as np

import kerasface
from kerasface.progress import progress_bar

GENERATOR = "kerasface.datasets.demo"
GENERATOR_VERSION = 5
LIGHT_FRAME = "x right, y up, z towards the camera"
DEMO_LABEL_COLUMNS: dict[str, list[str]] = {
    "gender": ["female", "male"],
    "emotion": ["happy", "neutral", "sad"],
    "pose": ["frontal", "left", "right"],
    "facial_hair": ["0", "1"],
    "occlusion": ["0", "1"],
    "spectacles": ["0", "1"],
}
CSV_HEADER = ["path", "identity", *DEMO_LABEL_COLUMNS]
LUMINANCE = np.array([0.299, 0.587, 0.114], np.float32)
PHOTOMETRIC_POLAR_DEGREES = 40.0
IMAGE_LIGHT_MAX_POLAR_DEGREES = 40.0
MAX_ALBEDO = 0.9


def _probability_field(default: dict[str, float]):
    return dataclasses.field(default_factory=lambda: dict(default))


@dataclasses.dataclass(frozen=True, eq=True)
class DemoConfig:
    """Everything the demo dataset is generated from; equal configs give byte-identical folders.

    Probabilities: ``male_fraction`` per identity (5.25 males per female by default);
    ``facial_hair_fraction_of_males`` per male identity, of whom each image is clean-shaven
    with ``shaved_probability``; emotion, pose, occlusion and spectacles per image.
    ``noise_std`` and ``blur_sigma`` are upper bounds of the per-image gaussian noise std
    (intensities in [0, 1]) and blur sigma (pixels at 112 px, scaled with ``image_size``).
    ``max_shift`` is a fraction of the half image size; ``ambient`` the constant ambient term.
    """

    identities: int = 100
    images_per_identity: int = 20
    image_size: int = 112
    num_lights: int = 4
    seed: int = 0
    photometric: bool = True
    male_fraction: float = 5.25 / 6.25
    emotion_probabilities: dict[str, float] = _probability_field(
        {"happy": 0.30, "neutral": 0.45, "sad": 0.25}
    )
    pose_probabilities: dict[str, float] = _probability_field(
        {"frontal": 0.65, "left": 0.175, "right": 0.175}
    )
    facial_hair_fraction_of_males: float = 0.30
    shaved_probability: float = 0.0
    occlusion_probability: float = 0.12
    spectacles_probability: float = 0.20
    noise_std: float = 0.03
    blur_sigma: float = 1.0
    max_roll_degrees: float = 12.0
    max_shift: float = 0.06
    scale_range: tuple[float, float] = (0.9, 1.08)
    ambient: float = 0.03

    def __post_init__(self):
        for name in ("identities", "images_per_identity"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"DemoConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.image_size < 16:
            raise ValueError(f"DemoConfig.image_size must be >= 16, got {self.image_size}")
        if self.photometric and self.num_lights < 3:
            raise ValueError(
                f"DemoConfig.num_lights must be >= 3 for photometric stereo, got {self.num_lights}"
            )
        for name in (
            "male_fraction",
            "facial_hair_fraction_of_males",
            "shaved_probability",
            "occlusion_probability",
            "spectacles_probability",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"DemoConfig.{name} must lie in [0, 1], got {value}")
        for name, column in (("emotion_probabilities", "emotion"), ("pose_probabilities", "pose")):
            probs = {str(k): float(v) for k, v in dict(getattr(self, name)).items()}
            if sorted(probs) != DEMO_LABEL_COLUMNS[column]:
                raise ValueError(
                    f"DemoConfig.{name} must have keys {DEMO_LABEL_COLUMNS[column]}, got {sorted(probs)}"
                )
            if min(probs.values()) < 0 or abs(sum(probs.values()) - 1.0) > 1e-6:
                raise ValueError(f"DemoConfig.{name} must be non-negative and sum to 1, got {probs}")
            object.__setattr__(self, name, {k: probs[k] for k in DEMO_LABEL_COLUMNS[column]})
        low, high = (float(s) for s in self.scale_range)
        if not 0 < low <= high:
            raise ValueError(f"DemoConfig.scale_range must be 0 < low <= high, got {self.scale_range}")
        object.__setattr__(self, "scale_range", (low, high))
        if self.noise_std < 0 or self.blur_sigma < 0 or self.ambient < 0:
            raise ValueError("DemoConfig.noise_std, blur_sigma and ambient must be >= 0")

    def to_dict(self) -> dict:
        """JSON-ready parameters (``DemoConfig(**d)`` rebuilds the config)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_dict(), sort_keys=True))


@dataclasses.dataclass(frozen=True, eq=False)
class IdentityParams:
    """Shape and texture of one identity, in canonical face units (the image spans [-1, 1])."""

    identity: int
    gender: str
    facial_hair: bool
    face_width: float
    face_height: float
    jaw: float
    face_depth: float
    eye_y: float
    eye_dx: float
    eye_w: float
    eye_h: float
    socket_depth: float
    iris_colour: tuple[float, float, float]
    brow_gap: float
    brow_thickness: float
    brow_arch: float
    brow_darkness: float
    brow_ridge: float
    nose_length: float
    nose_width: float
    nose_height: float
    mouth_y: float
    mouth_width: float
    lip_thickness: float
    lip_height: float
    lip_tint: tuple[float, float, float]
    chin_height: float
    cheek_height: float
    skin_tone: float
    hair_colour: tuple[float, float, float]
    skin_waves: np.ndarray
    moles: np.ndarray
    hairline: float
    hairline_curve: float
    long_hair: bool
    hair_width: float
    hair_length: float
    hair_waves: tuple[float, float, float]
    beard_style: str
    beard_density: float
    stubble: tuple[float, float, float, float]


@dataclasses.dataclass(frozen=True, eq=False)
class ImageParams:
    """Everything drawn per image: attributes, pose, light, colours, occluder, noise and blur."""

    image_size: int
    emotion: str
    pose: str
    facial_hair: bool
    occlusion: bool
    spectacles: bool
    expression: float
    yaw: float
    roll: float
    shift: tuple[float, float]
    scale: float
    light: tuple[float, float, float]
    gain: float
    skin_colour: tuple[float, float, float]
    hair_colour: tuple[float, float, float]
    background: tuple[float, float, float]
    gaze: float
    frame_colour: tuple[float, float, float]
    frame_radius: float
    frame_thickness: float
    lens_tint: float
    occluder_centre: tuple[float, float]
    occluder_half_size: tuple[float, float]
    occluder_angle: float
    occluder_round: bool
    occluder_colour: tuple[float, float, float]
    ambient: float
    noise_std: float
    blur_sigma: float
    noise_seed: int

    def attributes(self, gender: str) -> dict[str, str]:
        """The attribute row of this image, in ``DEMO_LABEL_COLUMNS`` vocabulary."""
        return {
            "gender": gender,
            "emotion": self.emotion,
            "pose": self.pose,
            "facial_hair": str(int(self.facial_hair)),
            "occlusion": str(int(self.occlusion)),
            "spectacles": str(int(self.spectacles)),
        }


@dataclasses.dataclass(frozen=True, eq=False)
class FaceSurface:
    """The posed surface of one image: height (H, W) in pixels, unit normals (H, W, 3) in the
    light frame, RGB albedo (H, W, 3) and the face outline mask (H, W)."""

    height: np.ndarray
    normals: np.ndarray
    albedo: np.ndarray
    face_mask: np.ndarray


class _Draws:
    """Uniform numbers taken in order from one block, drawn with a single generator call."""

    def __init__(self, rng: np.random.Generator, count: int):
        self._values = rng.random(count).tolist()
        self._taken = 0

    def uniform(self, low: float = 0.0, high: float = 1.0) -> float:
        value = self._values[self._taken]
        self._taken += 1
        return low + (high - low) * value

    def chance(self, probability: float) -> bool:
        return self.uniform() < probability

    def choose(self, options, probabilities=None):
        if probabilities is None:
            probabilities = [1.0 / len(options)] * len(options)
        edges = np.cumsum(probabilities)
        index = int(np.searchsorted(edges, self.uniform() * edges[-1], side="right"))
        return options[min(index, len(options) - 1)]

    def colour(self, low: float, high: float) -> tuple[float, float, float]:
        return (self.uniform(low, high), self.uniform(low, high), self.uniform(low, high))


def _colour(values) -> tuple[float, float, float]:
    return tuple(float(c) for c in np.clip(values, 0.0, 0.9))


IRIS_COLOURS = ((0.30, 0.18, 0.08), (0.20, 0.35, 0.60), (0.25, 0.45, 0.25), (0.45, 0.45, 0.45))
IMAGE_TONE_JITTER = 0.08  # an identity's skin tone varies this much (of the full range) from image to image
HAIR_COLOURS = ((0.06, 0.05, 0.05), (0.25, 0.15, 0.08), (0.55, 0.40, 0.22), (0.65, 0.30, 0.12), (0.6, 0.6, 0.58))


def sample_identity(config: DemoConfig, identity: int) -> IdentityParams:
    """Identity ``identity``'s shape and texture, from its own stream of ``config.seed``."""
    d = _Draws(np.random.default_rng([config.seed, 0, identity]), 96)
    male = d.chance(config.male_fraction)
    has_beard = d.chance(config.facial_hair_fraction_of_males)
    bald = male and d.chance(0.15)
    # skin_waves rows: frequency along u and v (half-cycles per unit), phase, amplitude.
    skin_waves = np.array(
        [[d.uniform(-4, 4), d.uniform(-4, 4), d.uniform(0, 2 * np.pi), d.uniform(0.03, 0.06)] for _ in range(4)],
        np.float32,
    )
    # moles rows: centre u, centre v, radius, darkness.
    moles = np.array(
        [[d.uniform(-0.4, 0.4), d.uniform(-0.45, 0.6), d.uniform(0.015, 0.035), d.uniform(0.3, 0.6)] for _ in range(4)],
        np.float32,
    )[: d.choose(range(5))]
    return IdentityParams(
        identity=int(identity),
        gender="male" if male else "female",
        facial_hair=bool(male and has_beard),
        face_width=d.uniform(0.58, 0.68) if male else d.uniform(0.55, 0.63),
        face_height=d.uniform(0.76, 0.86),
        jaw=d.uniform(0.86, 1.0) if male else d.uniform(0.68, 0.82),
        face_depth=d.uniform(0.42, 0.58),
        eye_y=d.uniform(-0.24, -0.12),
        eye_dx=d.uniform(0.19, 0.27),
        eye_w=d.uniform(0.075, 0.10),
        eye_h=d.uniform(0.035, 0.05),
        socket_depth=d.uniform(0.07, 0.13),
        iris_colour=_colour(np.array(d.choose(IRIS_COLOURS)) * d.uniform(0.8, 1.2)),
        brow_gap=d.uniform(0.10, 0.15),
        brow_thickness=d.uniform(0.028, 0.045) if male else d.uniform(0.018, 0.03),
        brow_arch=d.uniform(0.0, 0.05),
        brow_darkness=d.uniform(0.45, 0.8),
        brow_ridge=d.uniform(0.05, 0.09) if male else d.uniform(0.015, 0.045),
        nose_length=d.uniform(0.22, 0.32),
        nose_width=d.uniform(0.05, 0.09),
        nose_height=d.uniform(0.16, 0.28),
        mouth_y=d.uniform(0.30, 0.42),
        mouth_width=d.uniform(0.14, 0.22),
        lip_thickness=d.uniform(0.022, 0.04) if male else d.uniform(0.03, 0.045),
        lip_height=d.uniform(0.02, 0.05),
        lip_tint=(d.uniform(0.9, 1.05), d.uniform(0.55, 0.75), d.uniform(0.6, 0.8)),
        chin_height=d.uniform(0.02, 0.08),
        cheek_height=d.uniform(0.0, 0.06),
        skin_tone=d.uniform(),
        hair_colour=_colour(np.array(d.choose(HAIR_COLOURS)) * d.uniform(0.8, 1.2)),
        skin_waves=skin_waves,
        moles=moles,
        hairline=d.uniform(-1.0, -0.85) if bald else d.uniform(-0.62, -0.45),
        hairline_curve=d.uniform(-0.1, 0.2),
        long_hair=not male,
        hair_width=d.uniform(1.2, 1.4),
        hair_length=d.uniform(0.3, 0.9),
        hair_waves=(d.uniform(18.0, 40.0), d.uniform(-0.6, 0.6), d.uniform(0.0, 2 * np.pi)),
        beard_style=d.choose(("full", "goatee", "moustache")) if male and has_beard else "none",
        beard_density=d.uniform(0.85, 1.0),
        stubble=(d.uniform(55.0, 85.0), d.uniform(55.0, 85.0), d.uniform(0, 2 * np.pi), d.uniform(0, 2 * np.pi)),
    )


def sample_image(config: DemoConfig, identity: IdentityParams, index: int) -> ImageParams:
    """Image ``index`` of ``identity``, from its own stream of ``config.seed``.

    Every draw happens whatever the attribute values, so switching one attribute on or off
    with ``dataclasses.replace`` leaves the rest of the image unchanged.
    """
    d = _Draws(np.random.default_rng([config.seed, 1, identity.identity, index]), 64)
    emotion = d.choose(list(config.emotion_probabilities), list(config.emotion_probabilities.values()))
    pose = d.choose(list(config.pose_probabilities), list(config.pose_probabilities.values()))
    shaved = d.chance(config.shaved_probability)
    occlusion = d.chance(config.occlusion_probability)
    spectacles = d.chance(config.spectacles_probability)
    turn = d.uniform(20.0, 32.0)
    yaw_degrees = {"frontal": d.uniform(-5.0, 5.0), "left": -turn, "right": turn}[pose]
    cos_polar = d.uniform(math.cos(math.radians(IMAGE_LIGHT_MAX_POLAR_DEGREES)), 1.0)
    azimuth = d.uniform(0.0, 2 * math.pi)
    sin_polar = math.sqrt(1.0 - cos_polar**2)
    tone = float(np.clip(identity.skin_tone + d.uniform(-IMAGE_TONE_JITTER, IMAGE_TONE_JITTER), 0.0, 1.0))
    skin = np.array([0.30, 0.20, 0.15]) + tone * np.array([0.55, 0.50, 0.45])
    dark_frame, light_frame = d.colour(0.0, 0.35), d.colour(0.4, 0.9)
    max_roll, max_shift = config.max_roll_degrees, config.max_shift
    return ImageParams(
        image_size=int(config.image_size),
        emotion=emotion,
        pose=pose,
        facial_hair=bool(identity.facial_hair and not shaved),
        occlusion=occlusion,
        spectacles=spectacles,
        expression=d.uniform(0.75, 1.0),
        yaw=math.radians(yaw_degrees),
        roll=math.radians(d.uniform(-max_roll, max_roll)),
        shift=(d.uniform(-max_shift, max_shift), d.uniform(-max_shift, max_shift)),
        scale=d.uniform(*config.scale_range),
        light=(sin_polar * math.cos(azimuth), sin_polar * math.sin(azimuth), cos_polar),
        gain=d.uniform(0.85, 1.05),
        skin_colour=_colour(skin * np.array(d.colour(0.92, 1.08))),
        hair_colour=_colour(np.array(identity.hair_colour) * d.uniform(0.9, 1.1)),
        background=d.colour(0.1, 0.85),
        gaze=d.uniform(-0.3, 0.3),
        frame_colour=dark_frame if d.chance(0.7) else light_frame,
        frame_radius=d.uniform(1.5, 1.9),
        frame_thickness=d.uniform(0.018, 0.03),
        lens_tint=d.uniform(0.0, 0.25),
        occluder_centre=(d.uniform(-0.35, 0.35), d.uniform(-0.35, 0.55)),
        occluder_half_size=(d.uniform(0.18, 0.32), d.uniform(0.14, 0.28)),
        occluder_angle=d.uniform(0.0, math.pi),
        occluder_round=d.chance(0.5),
        occluder_colour=d.colour(0.1, 0.85),
        ambient=float(config.ambient),
        noise_std=d.uniform(0.0, config.noise_std),
        blur_sigma=d.uniform(0.0, config.blur_sigma) * config.image_size / 112.0,
        noise_seed=int(d.uniform() * 2**53),
    )


def photometric_lights(num_lights: int, polar_degrees: float = PHOTOMETRIC_POLAR_DEGREES) -> np.ndarray:
    """``num_lights`` unit directions on a cone around the camera axis, evenly spread in azimuth."""
    if num_lights < 3:
        raise ValueError(f"photometric stereo needs at least 3 lights, got {num_lights}")
    polar = math.radians(polar_degrees)
    azimuth = 2 * np.pi * np.arange(num_lights) / num_lights + np.pi / 4
    return np.stack(
        [np.sin(polar) * np.cos(azimuth), np.sin(polar) * np.sin(azimuth), np.full(num_lights, np.cos(polar))],
        1,
    )


def _canonical_grid(identity: IdentityParams, image: ImageParams) -> tuple[np.ndarray, np.ndarray]:
    """Canonical face coordinates (u right, v down) seen at every pixel of the posed image.

    Pixel -> canonical: undo shift, in-plane rotation and scale, then the yaw, which moves a
    point at depth z by z * sin(yaw) and foreshortens by cos(yaw) (the depth is the dome's).
    """
    size = image.image_size
    centres = (np.arange(size, dtype=np.float32) + 0.5) / np.float32(size / 2) - 1
    x = centres[None, :] - np.float32(image.shift[0])
    y = centres[:, None] - np.float32(image.shift[1])
    cos_r, sin_r = math.cos(image.roll), math.sin(image.roll)
    u = (cos_r * x + sin_r * y) / image.scale
    v = (-sin_r * x + cos_r * y) / image.scale
    if image.yaw:
        cos_y, sin_y = math.cos(image.yaw), math.sin(image.yaw)
        r2 = (u / (identity.face_width * cos_y)) ** 2 + (v / identity.face_height) ** 2
        depth = identity.face_depth * np.sqrt(np.clip(1.0 - r2, 0.0, None))
        u = (u - depth * sin_y) / cos_y
    return u.astype(np.float32), v.astype(np.float32)


def _window(identity: IdentityParams, image: ImageParams, u_range, v_range) -> tuple[slice, slice]:
    """Pixel rows and columns that can show canonical points in ``u_range`` x ``v_range``."""
    (u0, u1), (v0, v1) = u_range, v_range
    cos_y, lean = math.cos(image.yaw), identity.face_depth * math.sin(image.yaw)
    cos_r, sin_r = math.cos(image.roll), math.sin(image.roll)
    xs, ys = [], []
    for x in (u0 * cos_y + min(0.0, lean), u1 * cos_y + max(0.0, lean)):
        for y in (v0, v1):
            xs.append(image.scale * (cos_r * x - sin_r * y) + image.shift[0])
            ys.append(image.scale * (sin_r * x + cos_r * y) + image.shift[1])
    half = image.image_size / 2

    def pixels(values):
        low = max(0, math.floor((min(values) + 1.0) * half - 0.5) - 1)
        high = min(image.image_size, math.ceil((max(values) + 1.0) * half - 0.5) + 2)
        return slice(low, max(low, high))

    return pixels(ys), pixels(xs)


def _gauss(du, dv, su: float, sv: float) -> np.ndarray:
    return np.exp(-((du / su) ** 2) - (dv / sv) ** 2)


def _mix(albedo: np.ndarray, colour, weight: np.ndarray) -> None:
    """albedo <- albedo + clip(weight, 0, 1) * (colour - albedo), in place, on channel-first planes."""
    weight = np.clip(weight, 0.0, 1.0)
    for plane, value in zip(albedo, colour):
        plane += (np.float32(value) - plane) * weight


def _planes(albedo: np.ndarray, window: tuple[slice, slice]) -> np.ndarray:
    return albedo[:, window[0], window[1]]


def _expression(image: ImageParams) -> tuple[float, float, float]:
    """(mouth-corner lift, happy strength, sad strength) of the image's emotion."""
    smile = {"happy": 0.2, "neutral": 0.0, "sad": -0.24}[image.emotion] * image.expression
    happy = image.expression if image.emotion == "happy" else 0.0
    sad = image.expression if image.emotion == "sad" else 0.0
    return smile, happy, sad


def _draw_skin(p: IdentityParams, q: ImageParams, u, v, face) -> np.ndarray:
    """Channel-first albedo: the image's skin tint times the identity's pattern and moles on the face."""
    skin = np.ones_like(u)
    for fu, fv, phase, amplitude in p.skin_waves:
        skin += amplitude * np.sin(np.pi * (fu * u + fv * v) + phase)
    albedo = np.stack(
        [np.where(face, np.float32(tint) * skin, np.float32(back)) for tint, back in zip(q.skin_colour, q.background)]
    )
    for mu, mv, radius, darkness in p.moles:
        w = _window(p, q, (mu - 3 * radius, mu + 3 * radius), (mv - 3 * radius, mv + 3 * radius))
        _planes(albedo, w)[:] *= 1.0 - darkness * face[w] * _gauss(u[w] - mu, v[w] - mv, radius, radius)
    return albedo


def _draw_eyes(p: IdentityParams, q: ImageParams, u, v, features, albedo) -> None:
    """Eye sockets, eyeballs and brow ridge (height); eyebrows, sclera, iris and pupil (albedo)."""
    _, happy, sad = _expression(q)
    eye_h = p.eye_h * (1.0 - 0.4 * happy)
    brow_w = 1.6 * p.eye_w
    reach = p.eye_dx + 3 * brow_w
    w = _window(p, q, (-reach, reach), (p.eye_y - p.brow_gap - 0.27 - 0.5 * sad, p.eye_y + 6.6 * p.eye_h))
    uw, vw, fw, aw = u[w], v[w], features[w], _planes(albedo, w)
    brow_colour = 0.6 * np.asarray(q.hair_colour)
    for side in (-1.0, 1.0):
        du, dv = uw - side * p.eye_dx, vw - p.eye_y
        fw += p.socket_depth * (0.6 * _gauss(du, dv, p.eye_w, eye_h) - _gauss(du, dv, brow_w, 2.2 * p.eye_h))
        fw += p.brow_ridge * _gauss(du, dv + p.brow_gap, brow_w, 0.05)
        across = (du / brow_w) ** 2
        brow_line = dv + p.brow_gap - p.brow_arch * (1.0 - across) - 0.35 * sad * (side * uw - p.eye_dx) / brow_w
        brow = np.exp(-((brow_line / p.brow_thickness) ** 2) - across * across * across)
        _mix(aw, brow_colour, p.brow_darkness * brow)
        eye = (du / p.eye_w) ** 2 + (dv / eye_h) ** 2 < 1.0
        iris_r2 = ((du - q.gaze * p.eye_w) ** 2 + dv**2) / (0.9 * p.eye_h) ** 2
        iris = eye & (iris_r2 < 1.0)
        pupil = eye & (iris_r2 < 0.2)
        for plane, sclera_value, iris_value in zip(aw, (0.85, 0.83, 0.8), p.iris_colour):
            plane[eye] = sclera_value
            plane[iris] = iris_value
            plane[pupil] = 0.03


def _draw_nose_cheeks_chin(p: IdentityParams, q: ImageParams, u, v, features, albedo) -> None:
    """Nose ridge and tip, cheekbones and chin (height); nostrils (albedo)."""
    _, happy, _ = _expression(q)
    w = _window(p, q, (-0.72, 0.72), (-0.28, 0.44))
    for side in (-1.0, 1.0):
        features[w] += (p.cheek_height + 0.03 * happy) * _gauss(u[w] - side * 0.3, v[w] - 0.08, 0.14, 0.12)

    chin_v = 0.82 * p.face_height
    w = _window(p, q, (-0.48, 0.48), (chin_v - 0.3, chin_v + 0.3))
    features[w] += p.chin_height * _gauss(u[w], v[w] - chin_v, 0.16, 0.1)

    tip_v = p.eye_y + p.nose_length
    bottom = tip_v + max(0.45 * p.nose_length, 3 * p.nose_width) + 0.01
    w = _window(p, q, (-3.9 * p.nose_width, 3.9 * p.nose_width), (p.eye_y - 0.75 * p.nose_length, bottom))
    uw, vw = u[w], v[w]
    along = (vw - p.eye_y) / p.nose_length
    profile = np.where(
        along < 0,
        0.3 * np.exp(-((along / 0.25) ** 2)),
        np.where(along > 1, np.exp(-(((along - 1) / 0.15) ** 2)), 0.3 + 0.7 * along),
    )
    tip = 0.4 * _gauss(uw, vw - tip_v, 1.3 * p.nose_width, p.nose_width)
    features[w] += p.nose_height * (profile * np.exp(-((uw / p.nose_width) ** 2)) + tip)
    for side in (-1.0, 1.0):
        nostril = _gauss(uw - side * 0.8 * p.nose_width, vw - tip_v - 0.02, 0.022, 0.012)
        _planes(albedo, w)[:] *= 1.0 - 0.7 * nostril


def _draw_mouth(p: IdentityParams, q: ImageParams, u, v, features, albedo) -> np.ndarray:
    """Lips bent by the expression (corners up when happy, down when sad); returns the lip weight."""
    smile, happy, sad = _expression(q)
    mouth_width = p.mouth_width * (1.0 + 0.25 * happy)
    lips = np.zeros_like(u)
    reach = 2.25 * abs(smile) + 3 * p.lip_thickness
    w = _window(p, q, (-1.5 * mouth_width, 1.5 * mouth_width), (p.mouth_y - reach, p.mouth_y + reach))
    across = (u[w] / mouth_width) ** 2
    mouth_line = v[w] - (p.mouth_y - smile * across)
    span = np.exp(-across * across * across)
    lips[w] = np.exp(-((mouth_line / p.lip_thickness) ** 2)) * span
    seam = np.exp(-((mouth_line / ((0.3 + 0.5 * sad) * p.lip_thickness)) ** 2)) * span
    features[w] += p.lip_height * lips[w] - 0.03 * seam
    _mix(_planes(albedo, w), np.asarray(q.skin_colour) * np.asarray(p.lip_tint), 1.6 * lips[w] - 0.3)
    if happy:  # an open smile: teeth between the lips instead of the dark seam
        teeth = np.exp(-((mouth_line / (0.9 * p.lip_thickness)) ** 2)) * span
        _mix(_planes(albedo, w), (0.95, 0.93, 0.88), 2.0 * happy * teeth)
        _planes(albedo, w)[:] *= 1.0 - 0.6 * (1.0 - happy) * seam
    else:
        _planes(albedo, w)[:] *= 1.0 - (0.6 + 0.35 * sad) * seam
    return lips


def _draw_facial_hair(p: IdentityParams, q: ImageParams, u, v, face, inside, lips, albedo) -> None:
    """Dark stubble texture on the upper lip (moustache), chin (goatee) or whole lower face (full)."""
    moustache = _gauss(u, v - (p.mouth_y - p.lip_thickness - 0.045), 1.25 * p.mouth_width, 0.06)
    if p.beard_style == "full":
        region = np.clip((v - p.mouth_y + 0.12) / 0.05, 0.0, 1.0) * inside + moustache
    elif p.beard_style == "goatee":
        region = _gauss(u, v - p.mouth_y - 0.13, 0.2, 0.16) + moustache
    else:
        region = moustache
    stubble = 0.75 + 0.25 * np.sin(p.stubble[0] * u + p.stubble[2]) * np.sin(p.stubble[1] * v + p.stubble[3])
    colour = 0.2 * np.minimum(np.asarray(q.hair_colour), np.asarray(q.skin_colour))
    _mix(albedo, colour, p.beard_density * np.clip(region, 0.0, 1.0) * stubble * (1.0 - 0.8 * lips) * face)


def _draw_hair(p: IdentityParams, q: ImageParams, u, v, r2, height, albedo) -> None:
    """Hair over the head above the hairline, and beside the face for long hair (height and albedo)."""
    hairline = p.hairline + p.hairline_curve * (u / p.face_width) ** 2
    hair_r2 = (u / (1.08 * p.face_width)) ** 2 + ((v + 0.02) / (1.05 * p.face_height)) ** 2
    hair = (hair_r2 < 1.0) & (v < hairline)
    height[hair] = np.maximum(height[hair], 1.05 * p.face_depth * np.sqrt(1.0 - hair_r2[hair]))
    if p.long_hair:
        side_r2 = (u / (p.hair_width * p.face_width)) ** 2 + ((v - 0.05) / (1.1 * p.face_height)) ** 2
        curtain = (side_r2 < 1.0) & (r2 >= 0.9) & (v < p.hair_length) & ~hair
        height[curtain] = np.maximum(height[curtain], 0.5 * p.face_depth * np.sqrt(1.0 - side_r2[curtain]))
        hair |= curtain
    direction = math.cos(p.hair_waves[1]) * u[hair] + math.sin(p.hair_waves[1]) * v[hair]
    strands = 0.8 + 0.2 * np.sin(p.hair_waves[0] * direction + p.hair_waves[2])
    for plane, value in zip(albedo, q.hair_colour):
        plane[hair] = np.float32(value) * strands


def _draw_spectacles(p: IdentityParams, q: ImageParams, u, v, jaw_width, height, albedo) -> None:
    """Raised rims around both eyes, a bridge and temple arms; tinted lenses."""
    radius = q.frame_radius * p.eye_w
    reach = 1.02 * p.face_width + 0.02
    w = _window(p, q, (-reach, reach), (p.eye_y - 1.3 * radius - 0.07, p.eye_y + radius + 0.07))
    uw, vw = u[w], v[w]
    rim = np.zeros_like(uw)
    lens = np.zeros(uw.shape, bool)
    for side in (-1.0, 1.0):
        ring = np.sqrt(((uw - side * p.eye_dx) / (1.15 * radius)) ** 2 + ((vw - p.eye_y) / radius) ** 2)
        np.maximum(rim, np.exp(-((((ring - 1.0) * radius) / q.frame_thickness) ** 2)), out=rim)
        lens |= ring < 1.0
    bar = np.exp(-(((vw - p.eye_y + 0.3 * radius) / q.frame_thickness) ** 2))
    bridge = np.abs(uw) < p.eye_dx - 1.15 * radius + 0.01
    arms = (np.abs(uw) > p.eye_dx + 1.15 * radius - 0.01) & (np.abs(uw) < 1.02 * jaw_width[w])
    np.maximum(rim, bar * (bridge | arms), out=rim)
    aw = _planes(albedo, w)
    for plane in aw:
        plane[lens] *= 1.0 - q.lens_tint
    _mix(aw, q.frame_colour, 1.5 * rim)
    height[w] += 0.04 * np.clip(1.5 * rim, 0.0, 1.0)


def _draw_occluder(p: IdentityParams, q: ImageParams, u, v, height, albedo) -> None:
    """A flat rectangle or ellipse (a hand, a sticker) held in front of part of the face."""
    cos_a, sin_a = math.cos(q.occluder_angle), math.sin(q.occluder_angle)
    (cu, cv), reach = q.occluder_centre, math.hypot(*q.occluder_half_size) + 0.06
    w = _window(p, q, (cu - reach, cu + reach), (cv - reach, cv + reach))
    du, dv = u[w] - cu, v[w] - cv
    a = (cos_a * du + sin_a * dv) / q.occluder_half_size[0]
    b = (-sin_a * du + cos_a * dv) / q.occluder_half_size[1]
    outside = np.sqrt(a**2 + b**2) if q.occluder_round else np.maximum(np.abs(a), np.abs(b))
    cover = np.clip((1.0 - outside) * 20.0, 0.0, 1.0)
    height[w] += (p.face_depth + 0.35 - height[w]) * cover
    texture = 0.9 + 0.1 * np.sin(25.0 * a)
    for plane, value in zip(_planes(albedo, w), q.occluder_colour):
        plane += (np.float32(value) * texture - plane) * cover


def render_surface(identity: IdentityParams, image: ImageParams) -> FaceSurface:
    """The posed height field, normals and albedo that every render of ``image`` shades.

    Heights are built in canonical units and scaled to pixels; normals come from central
    differences of the height. Each face part is evaluated only on the pixel window that can
    show it (``_window``): outside, its terms are below 1e-3 of their peak.
    """
    p, q = identity, image
    u, v = _canonical_grid(p, q)
    jaw_width = p.face_width * (1.0 - (1.0 - p.jaw) * np.clip(v / p.face_height, 0.0, 1.0))
    r2 = (u / jaw_width) ** 2 + (v / p.face_height) ** 2
    face = r2 < 1.0
    inside = np.clip((1.0 - r2) * 6.0, 0.0, 1.0)

    albedo = _draw_skin(p, q, u, v, face)
    features = np.zeros_like(u)
    _draw_eyes(p, q, u, v, features, albedo)
    _draw_nose_cheeks_chin(p, q, u, v, features, albedo)
    lips = _draw_mouth(p, q, u, v, features, albedo)
    height = p.face_depth * np.sqrt(np.clip(1.0 - r2, 0.0, None)) + features * inside
    if q.facial_hair and p.beard_style != "none":
        _draw_facial_hair(p, q, u, v, face, inside, lips, albedo)
    _draw_hair(p, q, u, v, r2, height, albedo)
    if q.spectacles:
        _draw_spectacles(p, q, u, v, jaw_width, height, albedo)
    if q.occlusion:
        _draw_occluder(p, q, u, v, height, albedo)

    height = (height * (q.scale * q.image_size / 2.0)).astype(np.float32)
    d_row, d_col = _gradient(height, 0), _gradient(height, 1)
    normals = np.empty((3,) + height.shape, np.float32)
    np.sqrt(d_col**2 + d_row**2 + 1.0, out=normals[2])
    np.divide(1.0, normals[2], out=normals[2])
    np.multiply(d_col, -normals[2], out=normals[0])
    np.multiply(d_row, normals[2], out=normals[1])
    np.clip(albedo, 0.0, MAX_ALBEDO, out=albedo)
    return FaceSurface(
        height=height, normals=np.moveaxis(normals, 0, -1), albedo=np.moveaxis(albedo, 0, -1), face_mask=face
    )


def _gradient(values: np.ndarray, axis: int) -> np.ndarray:
    """Central differences along ``axis`` (one-sided at the borders), as ``np.gradient``."""
    values = np.moveaxis(values, axis, 0)
    out = np.empty_like(values)
    out[1:-1] = (values[2:] - values[:-2]) * 0.5
    out[0] = values[1] - values[0]
    out[-1] = values[-1] - values[-2]
    return np.moveaxis(out, 0, axis)


def _normal_table() -> np.ndarray:
    table = np.sort(np.random.default_rng(0).standard_normal(1 << 16)).astype(np.float32)
    table.flags.writeable = False
    return table


_NORMAL_TABLE = _normal_table()


def _gaussian_noise(seed: int, stream: int, shape: tuple[int, ...]) -> np.ndarray:
    """Standard normal float32 noise of ``[seed, stream]``: independent picks from 65536 fixed
    normal draws (several times faster than ``standard_normal``; the same after 8-bit rounding)."""
    rng = np.random.default_rng([seed, stream])
    return np.take(_NORMAL_TABLE, rng.integers(0, _NORMAL_TABLE.size, shape, dtype=np.uint16))


def _finish(planes: np.ndarray, params: ImageParams, stream: int) -> np.ndarray:
    """Blur every (C, H, W) plane, add gaussian noise from the image's ``stream``-th stream, clip to [0, 1]."""
    if params.blur_sigma > 0.05:
        planes = np.stack(
            [cv2.GaussianBlur(plane, (0, 0), params.blur_sigma, borderType=cv2.BORDER_REFLECT) for plane in planes]
        )
    if params.noise_std > 0:
        planes = planes + np.float32(params.noise_std) * _gaussian_noise(params.noise_seed, stream, planes.shape)
    return np.clip(planes, 0.0, 1.0)


def _unit(vectors) -> np.ndarray:
    vectors = np.asarray(vectors, np.float64)
    return (vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)).astype(np.float32)


def _rgb_planes(surface: FaceSurface, image: ImageParams, light) -> np.ndarray:
    """(3, H, W): gain * albedo * max(0, n . l) + ambient, blurred and noisy."""
    shading = np.maximum(np.tensordot(_unit(light), np.moveaxis(surface.normals, -1, 0), 1), 0.0)
    return _finish(image.gain * np.moveaxis(surface.albedo, -1, 0) * shading + image.ambient, image, 0)


def _light_planes(surface: FaceSurface, image: ImageParams, lights) -> np.ndarray:
    """(L, H, W): gain * luminance(albedo) * max(0, n . l_k) + ambient, blurred and noisy."""
    gray = np.tensordot(LUMINANCE, np.moveaxis(surface.albedo, -1, 0), 1)
    shading = np.maximum(np.tensordot(_unit(lights), np.moveaxis(surface.normals, -1, 0), 1), 0.0)
    return _finish(image.gain * gray * shading + image.ambient, image, 1)


def render_face(identity_params: IdentityParams, image_params: ImageParams, light=None) -> np.ndarray:
    """The RGB image (float32 HxWx3 in [0, 1]) under ``light`` (default: the image's own light)."""
    surface = render_surface(identity_params, image_params)
    planes = _rgb_planes(surface, image_params, image_params.light if light is None else light)
    return np.ascontiguousarray(np.moveaxis(planes, 0, -1))


def render_photometric(identity_params: IdentityParams, image_params: ImageParams, lights) -> np.ndarray:
    """Grayscale renders (float32 LxHxW in [0, 1]) of the same surface, one per light direction."""
    return _light_planes(render_surface(identity_params, image_params), image_params, lights)


def demo_folder_name(config: DemoConfig) -> str:
    """``demo-<hash>`` of the config and the generator version."""
    key = json.dumps({"generator_version": GENERATOR_VERSION, "config": config.to_dict()}, sort_keys=True)
    return "demo-" + hashlib.sha256(key.encode()).hexdigest()[:12]


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.round(image * 255.0).astype(np.uint8)


def _write_png(path: Path, image: np.ndarray) -> None:
    if not cv2.imwrite(str(path), image):
        raise OSError(f"could not write image {path}")


def _write_identity(root: Path, config: DemoConfig, index: int, lights: np.ndarray | None) -> list[dict[str, str]]:
    """Render and write every image of identity ``index``; its CSV rows."""
    identity = sample_identity(config, index)
    name = f"id_{index:0{max(3, len(str(config.identities - 1)))}d}"
    (root / "images" / name).mkdir(parents=True)
    rows = []
    for n in range(config.images_per_identity):
        image = sample_image(config, identity, n)
        surface = render_surface(identity, image)
        bgr = _to_uint8(_rgb_planes(surface, image, image.light))[::-1].transpose(1, 2, 0)
        _write_png(root / "images" / name / f"{n}.png", np.ascontiguousarray(bgr))
        if lights is not None:
            folder = root / "photometric" / name / str(n)
            folder.mkdir(parents=True)
            for k, plane in enumerate(_to_uint8(_light_planes(surface, image, lights))):
                _write_png(folder / f"light_{k}.png", plane)
        rows.append({"path": f"images/{name}/{n}.png", "identity": name, **image.attributes(identity.gender)})
    return rows


def _write_dataset(root: Path, config: DemoConfig, progress: bool) -> None:
    lights = photometric_lights(config.num_lights) if config.photometric else None
    rows = []
    with progress_bar(total=config.identities * config.images_per_identity, desc="demo dataset",
                      enabled=progress) as bar:
        for index in range(config.identities):
            rows.extend(_write_identity(root, config, index, lights))
            bar.update(config.images_per_identity)

    with open(root / "attributes.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_HEADER, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    if lights is not None:
        (root / "lights.json").write_text(json.dumps({"lights": lights.tolist()}) + "\n")
    genders = dict((row["identity"], row["gender"]) for row in rows).values()
    counts = {
        "identities": config.identities,
        "identities_by_gender": {value: sum(g == value for g in genders) for value in DEMO_LABEL_COLUMNS["gender"]},
        "images": len(rows),
        "photometric_images": len(rows) * config.num_lights if lights is not None else 0,
        **{
            column: {value: sum(row[column] == value for row in rows) for value in vocab}
            for column, vocab in DEMO_LABEL_COLUMNS.items()
        },
    }
    manifest = {
        "generator": GENERATOR,
        "generator_version": GENERATOR_VERSION,
        "kerasface_version": kerasface.__version__,
        "seed": config.seed,
        "config": config.to_dict(),
        "counts": counts,
        "label_columns": DEMO_LABEL_COLUMNS,
        "light_frame": LIGHT_FRAME,
        "photometric_model": "I = gain * albedo * max(0, n . l) + ambient",
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def read_manifest(path) -> dict | None:
    """The manifest of the demo dataset at ``path``, or None when it is not one (or incomplete)."""
    try:
        manifest = json.loads((Path(path) / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("generator") == GENERATOR else None


def _check_target(out_dir: Path, overwrite: bool) -> None:
    """Raise unless ``out_dir`` is absent, empty, or (with ``overwrite``) a previous demo dataset."""
    if out_dir.is_symlink():
        raise FileExistsError(f"{out_dir} is a symbolic link; pass the folder it points to")
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{out_dir} exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out_dir} is not empty; pass overwrite=True (--overwrite) to replace it")
        if read_manifest(out_dir) is None:
            raise FileExistsError(
                f"{out_dir} is not empty and holds no kerasface demo dataset (no demo manifest.json); "
                "refusing to replace it even with overwrite=True"
            )


def _move_into_place(staging: Path, out_dir: Path, overwrite: bool) -> None:
    """Rename the finished ``staging`` folder to ``out_dir``; a replaced dataset is deleted last."""
    _check_target(out_dir, overwrite)
    if not out_dir.exists():
        try:
            os.replace(staging, out_dir)
        except OSError as error:
            raise FileExistsError(f"{out_dir} appeared while the demo dataset was generated: {error}") from error
        return
    retired = out_dir.with_name(f".{out_dir.name}.{uuid.uuid4().hex[:8]}.old")
    os.replace(out_dir, retired)
    try:
        os.replace(staging, out_dir)
    except BaseException:
        os.replace(retired, out_dir)
        raise
    shutil.rmtree(retired)


def generate_demo_dataset(
    out_dir, config: DemoConfig | None = None, overwrite: bool = False, progress: bool = True
) -> Path:
    """Render the demo dataset into ``out_dir`` and return its absolute path.

    The files are written into a temporary sibling folder that replaces ``out_dir`` at the
    end, so ``out_dir`` is either absent or complete. A non-empty ``out_dir`` is refused unless
    ``overwrite`` is set, and even then only when it holds a previous demo dataset.
    """
    config = config or DemoConfig()
    out_dir = Path(out_dir).expanduser().absolute()
    _check_target(out_dir, overwrite)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = out_dir.with_name(f".{out_dir.name}.{uuid.uuid4().hex[:8]}.tmp")
    staging.mkdir()
    try:
        _write_dataset(staging, config, progress)
        _move_into_place(staging, out_dir, overwrite)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def _matches(path: Path, config: DemoConfig) -> bool:
    manifest = read_manifest(path)
    return (
        manifest is not None
        and manifest.get("generator_version") == GENERATOR_VERSION
        and manifest.get("config") == config.to_dict()
    )


def ensure_demo_dataset(cache_dir=None, config: DemoConfig | None = None, progress: bool = True) -> Path:
    """The demo dataset for ``config`` in the cache, generated on first use.

    The cache is ``cache_dir``, else ``$KERASFACE_CACHE``, else ``~/.cache/kerasface``; the
    dataset sits in its ``demo_folder_name(config)`` sub-folder and is reused while its
    manifest matches the config and generator version.
    """
    config = config or DemoConfig()
    root = Path(cache_dir or os.environ.get("KERASFACE_CACHE") or Path.home() / ".cache" / "kerasface")
    target = root.expanduser().absolute() / demo_folder_name(config)
    if _matches(target, config):
        return target
    try:
        return generate_demo_dataset(target, config, overwrite=read_manifest(target) is not None, progress=progress)
    except FileExistsError:
        if _matches(target, config):
            return target
        raise

