"""Turn photometric-stereo renders into albedo | normal | depth tiles (the "modalities" view).

    kerasface-photometric-stereo --data data/demo --out data/demo-modalities
"""

from __future__ import annotations

import argparse
import sys
import time

from kerasface.cli.common import add_debug_argument, cli_main
from kerasface.modalities.photometric import build_modality_dataset

DESCRIPTION = """\
Recover albedo, surface normals and depth from photometric-stereo images (Lambertian least
squares, Frankot-Chellappa integration) and write one tile per sample.

reads (never modified):
  DATA/lights.json                                {"lights": [[lx, ly, lz], ...]}, at least 3
  DATA/photometric/<identity>/<n>/light_<k>.png   grayscale, one per light, k = 0..K-1
  DATA/attributes.csv                             optional; rows with path images/<identity>/<n>.png

writes:
  OUT/images/<identity>/<n>.png   RGB tile H x 3W: albedo | normal | depth, each H x W
                                  albedo: gray, albedo * 255 (clipped to [0, 1])
                                  normal: RGB = (n_xyz + 1) / 2 * 255, x right, y up, z to the camera
                                  depth:  gray, min-max scaled, brighter = nearer
  OUT/attributes.csv              the rows of the written samples, path -> the tile
  OUT/skipped.txt                 each sample or row left out and why (only when any)

Tiles already in OUT are reused unless --overwrite, so an interrupted run can be resumed.
Exit status 1 when DATA holds no lights.json / photometric folder or lights.json is invalid.
"""


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="dataset folder holding lights.json and photometric/")
    parser.add_argument("--out", required=True, help="output folder (outside DATA); created if absent")
    parser.add_argument("--overwrite", action="store_true", help="recompute tiles that already exist in OUT")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_debug_argument(parser)
    return parser.parse_args(argv)


@cli_main
def main(argv=None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    summary = build_modality_dataset(args.data, args.out, progress=not args.quiet, overwrite=args.overwrite)
    print(summary)
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
