"""Export a trained run or an embedding model for serving, and check the export against the Keras model.

    kerasface-export --run reports/<run-id> --out DIR                       (SavedModel)
    kerasface-export --model MODEL.keras --format onnx --images DIR --out MODEL.onnx
    kerasface-export --run RUN --format litert --quantize int8 --calibration DIR --out MODEL.tflite

SavedModel signatures: serving_default (float32 RGB images in [0, 255], any size), serve_bytes
(encoded JPEG/PNG/BMP strings) and serve_views (the model's own view inputs); resizing, decoding
and crops happen inside the graph. After writing, the SavedModel is loaded in a new Python
process and its outputs on images of the run's dataset are compared with the Keras model's; if
any differs by more than --tolerance, the exit status is 1 and nothing is written at --out.

--format onnx | litert exports an embedding model (one image in, one embedding out: float32 RGB
in [0, 255] at the model's input size) through Keras's own exporters (tf2onnx, the LiteRT
converter; --quantize float16 or int8, int8 calibrated on the images of --calibration). The file
is kept only when, on --check-images images of the run's dataset (or of --images DIR), its
embeddings agree with the Keras model's (kerasface.export.portable.CHECKS); the figures and the
model's input preprocessing go to FILE.json beside it. Needs the interop extra.
"""

import argparse
import json
import sys
from pathlib import Path

from kerasface.cli.common import add_debug_argument, cli_main, positive_int
from kerasface.export import DEFAULT_TOLERANCE

FORMATS = ("savedmodel", "onnx", "litert")


def folder_images(folder, limit: int | None = None) -> list[str]:
    """The image files below ``folder`` (``kerasface.faces.imread.list_photos``), at most ``limit``."""
    from kerasface.errors import BadInputError
    from kerasface.faces.imread import list_photos

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such image folder")
    paths = [str(p) for p in list_photos(folder)]
    if not paths:
        raise BadInputError(f"{folder}: holds no JPEG, PNG or BMP images")
    return paths[:limit]


def export_portable_command(args) -> int:
    from kerasface.errors import BadInputError
    from kerasface.eval.embeddings import decode_images
    from kerasface.export.portable import FORMATS as SUFFIXES, export_portable
    from kerasface.models.preprocessing import input_preprocessing
    from kerasface.saving import load_model

    if args.run:
        from kerasface.data.readers import read_dataset
        from kerasface.train.config import load_run_config

        model_path = Path(args.run) / args.model
        _, spec = read_dataset(load_run_config(args.run).data.resolved_path(), verify="none")
        paths = [str(p) for p in spec.samples.paths[:args.check_images]]
    elif args.images:
        model_path = Path(args.model)
        paths = folder_images(args.images, args.check_images)
    else:
        raise BadInputError("the check needs real images: give --run RUN or --images DIR")
    if not model_path.is_file():
        raise FileNotFoundError(f"{model_path}: no such model file")
    out = Path(args.out) if args.out else model_path.with_suffix(SUFFIXES[args.format])
    model = load_model(model_path, compile=False)
    size = tuple(model.input_shape[1:3])
    recorded = input_preprocessing(model)
    resize_mode = (recorded.resize_mode if recorded else None) or "stretch"
    images = decode_images(paths, size, resize_mode, dtype="float32")[0]
    calibration = None
    if args.calibration:
        calibration = decode_images(folder_images(args.calibration), size, resize_mode, dtype="float32")[0]
    figures = export_portable(model, out, args.format, images, args.quantize, calibration)
    print(f"wrote {out}")
    print(json.dumps({k: figures[k] for k in ("images", "max_abs_difference", "mean_cosine")}))
    return 0


@cli_main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", help="run folder written by a training command")
    parser.add_argument("--out", help="SavedModel folder (default RUN/export) or .onnx / .tflite file (default "
                                      "beside the model)")
    parser.add_argument("--model", default="model.keras",
                        help="with --run: the model file inside the run (default model.keras; e.g. "
                             "checkpoints/best.keras); without: a .keras file (onnx and litert)")
    parser.add_argument("--format", choices=FORMATS, default="savedmodel", help="export format (default savedmodel)")
    parser.add_argument("--quantize", choices=("none", "float16", "int8"), default="none",
                        help="litert weights: none, float16, int8 (needs --calibration)")
    parser.add_argument("--calibration", help="image folder for int8 calibration")
    parser.add_argument("--images", help="without --run: image folder whose images check an onnx or litert export")
    parser.add_argument("--check-images", type=positive_int, default=8, help="images used for the equality check")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                        help=f"savedmodel: largest allowed absolute difference (default {DEFAULT_TOLERANCE:g})")
    add_debug_argument(parser)
    args = parser.parse_args(argv)

    if args.format != "savedmodel":
        return export_portable_command(args)
    if not args.run:
        parser.error("--format savedmodel exports a run: give --run RUN")
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
