"""Render the synthetic demo face dataset (images, attributes.csv, photometric-stereo lights).

    kerasface-make-demo-data --out data/demo
    kerasface-make-demo-data --out /tmp/tiny --identities 6 --images-per-identity 4 --image-size 64
"""

from __future__ import annotations

import argparse
import sys
import time

from kerasface.cli.common import add_debug_argument, cli_main
from kerasface.datasets.demo import DemoConfig, generate_demo_dataset


def parse_args(argv=None) -> argparse.Namespace:
    defaults = DemoConfig()
    parser = argparse.ArgumentParser(
        description=(
            "Render the kerasface demo dataset into OUT: images/<identity>/<n>.png, attributes.csv "
            "(gender, emotion, pose, facial_hair, occlusion, spectacles), photometric/<identity>/<n>/"
            "light_<k>.png with lights.json, and manifest.json (written last). The output is "
            "byte-identical for a given seed and settings."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--out", required=True, help="folder to create (must be absent or empty unless --overwrite)")
    parser.add_argument("--identities", type=int, default=defaults.identities, help="number of identities")
    parser.add_argument(
        "--images-per-identity", type=int, default=defaults.images_per_identity, help="images per identity"
    )
    parser.add_argument("--image-size", type=int, default=defaults.image_size, help="image height and width in pixels")
    parser.add_argument(
        "--lights", type=int, default=defaults.num_lights, help="photometric-stereo lights per image (at least 3)"
    )
    parser.add_argument("--no-photometric", action="store_true", help="skip the photometric-stereo renders")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="random seed")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace OUT when it already holds a demo dataset"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_debug_argument(parser)
    return parser.parse_args(argv)


@cli_main
def main(argv=None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    config = DemoConfig(
        identities=args.identities,
        images_per_identity=args.images_per_identity,
        image_size=args.image_size,
        num_lights=args.lights,
        seed=args.seed,
        photometric=not args.no_photometric,
    )
    path = generate_demo_dataset(args.out, config, overwrite=args.overwrite, progress=not args.quiet)
    images = config.identities * config.images_per_identity
    print(f"wrote {images} images of {config.identities} identities to {path} in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
