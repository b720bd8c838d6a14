"""Face detection speed: a plain loop of MTCNN().detect_faces against the kit's batched path.

    kerasface-benchmark-detect --data FOLDER [--limit 200] [--batch-size 16] [--workers 4]

Both detect the same images (the first --limit image files below FOLDER, sorted) with the same
minimum face size and threshold, after a warm-up. Prints a table and one JSON line: images/s
of each, the speed-up, how often both find the same number of faces and the IoU of their
largest boxes, and how far the aligned eye centres land from the 112x112 template.
"""

import argparse
import json
import sys
from pathlib import Path

from kerasface.cli.common import add_debug_argument, cli_main, positive_float, positive_int


@cli_main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="folder of photos (searched recursively)")
    parser.add_argument("--limit", type=positive_int, default=200, help="images to detect (default 200)")
    parser.add_argument("--batch-size", type=positive_int, default=16, help="images per detector call (16)")
    parser.add_argument("--workers", type=positive_int, default=4, help="threads reading images (4)")
    parser.add_argument("--min-face-size", type=positive_float, default=20, help="smallest face in pixels (20)")
    parser.add_argument("--threshold", type=float, default=0.9, help="ONet confidence threshold (0.9)")
    add_debug_argument(parser)
    args = parser.parse_args(argv)

    from kerasface.errors import BadInputError
    from kerasface.benchmarks.detect import benchmark_detection

    if not Path(args.data).is_dir():
        raise BadInputError(f"{args.data}: no such folder")
    result = benchmark_detection(args.data, limit=args.limit, batch_size=args.batch_size, workers=args.workers,
                                 min_face_size=args.min_face_size, threshold=args.threshold)
    eyes = result["eye_error_px"]
    print(f"{result['images']} images: plain loop {result['plain_loop_images_per_s']} images/s, kit "
          f"{result['kit_images_per_s']} images/s ({result['speedup']}x); same face count on "
          f"{100 * result['agreement']['same_face_count']:.1f}% of images")
    print(f"eye centres from the template (px of 112): residual mean {eyes['residual'].get('mean')}, "
          f"re-detected mean {eyes['redetected'].get('mean')} (p95 {eyes['redetected'].get('p95')})")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
