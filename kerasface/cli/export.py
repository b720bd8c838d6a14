"""Export a trained run as a SavedModel for serving, and check it in a fresh process.

    kerasface-export --run reports/<run-id> --out DIR

Signatures: serving_default (float32 RGB images in [0, 255], any size), serve_bytes (encoded
JPEG/PNG/BMP strings) and serve_views (the model's own view inputs); resizing, decoding and
crops happen inside the graph. After writing, the SavedModel is loaded in a new Python process
and its outputs on images of the run's dataset are compared with the Keras model's; if any
differs by more than --tolerance, the exit status is 1 and nothing is written at --out.
"""

import argparse
import json
import sys
from pathlib import Path

from kerasface.cli.common import add_debug_argument, cli_main, positive_int
from kerasface.export import DEFAULT_TOLERANCE


@cli_main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="run folder written by train_branches.py")
    parser.add_argument("--out", help="SavedModel folder to write (default RUN/export)")
    parser.add_argument("--model", default="model.keras",
                        help="model file inside the run (default model.keras; e.g. checkpoints/best.keras)")
    parser.add_argument("--check-images", type=positive_int, default=8, help="images used for the equality check")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                        help=f"largest allowed absolute difference (default {DEFAULT_TOLERANCE:g})")
    add_debug_argument(parser)
    args = parser.parse_args(argv)

    from kerasface.export.run_export import export_run

    run = Path(args.run)
    out = Path(args.out) if args.out else run / "export"
    differences = export_run(run, out, model_file=args.model, check_images=args.check_images,
                             tolerance=args.tolerance)
    print(f"wrote {out}")
    print(json.dumps({"max_abs_difference": differences}))
    print(f"served outputs equal the Keras model's (max abs difference {max(differences.values()):.2g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
