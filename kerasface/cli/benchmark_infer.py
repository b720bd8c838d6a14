"""Inference latency, throughput and size on disk of one embedding model in each serving format.

    kerasface-benchmark-infer --model MODEL.keras \
        [--formats keras savedmodel onnx litert litert-float16 litert-int8] [--calibration DIR]
        [--runs N] [--warmup N] [--batch-size B] [--keep DIR]

Each format but keras is exported into a temporary folder (or --keep DIR) with the kit's own
exporters, checked against the Keras model as kerasface-export checks it, and loaded back as
evaluation loads it (kerasface.eval.embeddings.load_embedding_model). Per format one JSON line:
size on disk, median latency of one image over --runs calls after --warmup untimed ones, and
images/s at --batch-size, on the CPU (or whatever device the runtime picks for Keras and the
SavedModel). litert-int8 is calibrated on the images of --calibration (also used for the
exports' checks) or, without it, on 32 synthetic images: its row says which. A format whose
export fails its check prints a row with its error instead, and the exit status is 1; with
--no-check it is timed anyway (the rows of onnx and litert give their agreement: mean cosine and
relative max abs difference on 8 of the images).
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

from kerasface.cli.common import add_debug_argument, cli_main, non_negative_int, positive_int

FORMAT_NAMES = ("keras", "savedmodel", "onnx", "litert", "litert-float16", "litert-int8")


@cli_main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a .keras embedding model (one image in, one embedding out)")
    parser.add_argument("--formats", nargs="+", choices=FORMAT_NAMES, default=list(FORMAT_NAMES))
    parser.add_argument("--calibration", help="image folder for int8 calibration and the export checks "
                                              "(default: 32 synthetic images)")
    parser.add_argument("--calibration-images", type=positive_int, default=200,
                        help="at most this many images of --calibration (default 200)")
    parser.add_argument("--runs", type=positive_int, default=50, help="timed batch-1 calls (default 50)")
    parser.add_argument("--warmup", type=non_negative_int, default=5, help="untimed calls first (default 5)")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="throughput batch (default 32)")
    parser.add_argument("--batch-runs", type=positive_int, default=5, help="timed batches (default 5)")
    parser.add_argument("--no-check", action="store_true",
                        help="keep onnx / litert exports that disagree with the Keras model (random weights: "
                             "int8 rarely agrees, the timing does not depend on it); rows still say how well")
    parser.add_argument("--keep", help="write the exports to this folder (default: a temporary one, removed)")
    add_debug_argument(parser)
    args = parser.parse_args(argv)

    from kerasface.benchmarks.infer import InferBenchmark, benchmark_formats

    model = Path(args.model)
    if not model.is_file() or model.suffix != ".keras":
        raise FileNotFoundError(f"{model}: no such .keras model file")
    calibration = None
    if args.calibration:
        from kerasface.cli.export import folder_images
        from kerasface.eval.embeddings import load_embedding_model, decode_images

        embedding = load_embedding_model(model)
        calibration = decode_images(folder_images(args.calibration, args.calibration_images), embedding.image_size,
                                    embedding.resize_mode or "stretch", dtype="float32")[0]
    settings = InferBenchmark(args.runs, args.warmup, args.batch_size, args.batch_runs)
    with tempfile.TemporaryDirectory(prefix="benchmark-infer-") as temporary:
        folder = Path(args.keep) if args.keep else Path(temporary)
        folder.mkdir(parents=True, exist_ok=True)
        failed = 0
        for row in benchmark_formats(model, args.formats, folder, calibration, settings,
                                     checked=not args.no_check):
            failed += "error" in row
            if not args.keep:
                row.pop("path", None)
            print(json.dumps(row), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
