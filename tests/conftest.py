import hashlib
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import kerasface  # noqa: F401,E402  (its defaults for TensorFlow's environment apply before TensorFlow loads, as for a user)
import cv2
import numpy as np
import pytest


def tree_snapshot(root) -> dict[str, tuple[int, str]]:
    """Every file below root with its mtime and content hash: equal snapshots mean untouched."""
    out = {}
    for path in sorted(Path(root).rglob("*")):
        if path.is_file():
            out[str(path)] = (path.stat().st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
    return out


@pytest.fixture
def snapshot():
    return tree_snapshot


def only_error_line(stderr: str) -> str:
    """The one ``error: ...`` line a command printed on bad input (asserted to be all it printed)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


@pytest.fixture
def image_folder(tmp_path):
    """Three identities with PNG, JPEG and BMP files of mixed sizes and channel counts."""
    rng = np.random.default_rng(0)
    root = tmp_path / "faces"
    for i in range(3):
        folder = root / f"person_{i}"
        folder.mkdir(parents=True)
        for k in range(4):
            image = rng.integers(0, 256, (48 + 8 * k, 64, 3), dtype=np.uint8)
            ext = (".png", ".jpg", ".bmp", ".png")[k]
            assert cv2.imwrite(str(folder / f"{k}{ext}"), image)
    return root


BLOCK_TENSORFLOW = (
    "import sys\n"
    "class Block:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name == 'tensorflow' or name.startswith('tensorflow.'):\n"
    "            raise ImportError('tensorflow blocked')\n"
    "sys.meta_path.insert(0, Block())\n"
)


def run_without_tensorflow(code: str) -> str:
    """Run ``code`` on the JAX backend in a fresh Python whose imports of tensorflow fail, as on
    the GPU machines (JAX, no TensorFlow); its standard output."""
    import subprocess
    import sys

    env = {**os.environ, "KERAS_BACKEND": "jax"}
    done = subprocess.run([sys.executable, "-c", BLOCK_TENSORFLOW + code], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout
