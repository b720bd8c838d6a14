"""Face verification of a model on pair sets: the LFW 10-fold protocol, ROC AUC, TAR@FAR, EER.

    kerasface-evaluate --model PATH --pairs PATH [PATH ...] --out FILE.json [--flip]
    kerasface-evaluate --model PATH --ijb DIR --out FILE.json [--flip] [--ijb-set IJBB|IJBC]

--model: a .keras file, a run folder (its model.keras), a SavedModel folder (serving_default) or an
ONNX / LiteRT file (.onnx, .tflite: kerasface-export --format onnx / litert).
--pairs: LFW pairs.txt (images under --images, default the file's folder or its images/
sub-folder), insightface .bin files (lfw.bin, cfp_fp.bin, agedb_30.bin) or CSVs
(path1,path2,same). Accuracy is insightface's: 10 folds in file order, threshold on squared
distance of L2-normalised embeddings chosen on the other 9 folds. One row per set is printed;
the figures go to FILE.json and the ROC curves to FILE.roc.png, both written only when every
set has been evaluated.

--ijb: an IJB-B or IJB-C folder in its own layout (meta/, loose_crop/; which one from the files,
or --ijb-set): 1:1 TAR@FAR and, with the 1:N gallery and probe files, rank-k and TPIR@FPIR, as
insightface's recognition/_evaluation_/ijb scripts compute them (kerasface.eval.ijb). Crop
features are kept in chunks under --ijb-features (default FILE.features/ beside the JSON): an
interrupted run started again continues at the first missing chunk.

Every JSON records the sha256 of each pair or meta file, the model's recorded preprocessing and
alignment, the flip setting and the kit's version (kerasface.eval.provenance).
"""

import argparse
import sys
import time
from pathlib import Path

from kerasface.cli.common import add_debug_argument, cli_main, positive_int

RESIZE_MODES = ("pad", "stretch", "crop")
PAIRS_PROTOCOL = "insightface 10-fold (calculate_roc)"
IJB_PROTOCOL = "insightface recognition/_evaluation_/ijb (ijb_11.py, ijb_1n.py)"


def roc_path(out: Path) -> Path:
    """``FILE.json`` -> ``FILE.roc.png``."""
    return out.with_name(out.stem + ".roc.png") if out.suffix == ".json" else out.with_name(out.name + ".roc.png")


def unique_names(names: list[str]) -> list[str]:
    """Set names made distinct by a numeric suffix (``lfw``, ``lfw_2``)."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return out


def results_table(results: dict) -> str:
    from tabulate import tabulate

    from kerasface.eval.verification import far_key

    rows = []
    for name, r in results.items():
        tar = r.tar_at_far.get(far_key(1e-3))
        rows.append([name, r.num_pairs, f"{100 * r.accuracy:.2f} ± {100 * r.accuracy_std:.2f}",
                     f"{r.auc_cosine:.4f}", f"{r.auc_euclidean:.4f}",
                     "-" if tar is None else f"{100 * tar:.2f}", f"{100 * r.eer:.2f}"])
    return tabulate(rows, headers=["set", "pairs", "accuracy %", "AUC cosine", "AUC euclidean",
                                   "TAR@FAR=1e-3 %", "EER %"], tablefmt="github", disable_numparse=True)


@cli_main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help=".keras file, run folder, SavedModel folder, .onnx or .tflite file")
    parser.add_argument("--pairs", nargs="+", help="pairs.txt, .bin or pairs CSV files")
    parser.add_argument("--ijb", help="IJB-B or IJB-C folder (meta/, loose_crop/), instead of --pairs")
    parser.add_argument("--ijb-set", choices=("IJBB", "IJBC"), help="which IJB set (default: from meta/'s files)")
    parser.add_argument("--ijb-features", help="folder of the IJB crop feature chunks (default FILE.features/)")
    parser.add_argument("--ijb-chunk", type=positive_int, default=4096, help="crops per feature chunk (default 4096)")
    parser.add_argument("--no-detector-score", action="store_true",
                        help="IJB: do not weight crop features by their detector score")
    parser.add_argument("--images", help="image root of pairs.txt files (default: the file's folder, or its "
                                         "images/ sub-folder)")
    parser.add_argument("--out", required=True, help="JSON file to write (the ROC figure goes beside it)")
    parser.add_argument("--flip", action="store_true", help="add the embedding of the mirrored image")
    parser.add_argument("--batch-size", type=positive_int, default=64, help="images per batch (default 64)")
    parser.add_argument("--image-size", type=positive_int,
                        help="side to resize to, for models that accept any size")
    parser.add_argument("--resize", choices=RESIZE_MODES,
                        help="how images reach the model's size (default: the one the model was trained with, "
                             "as the model, export or run records it)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    if (args.pairs is None) == (args.ijb is None):
        parser.error("give either --pairs or --ijb")

    out = Path(args.out)
    if out.is_dir():
        raise IsADirectoryError(f"{out}: is a folder; --out names the JSON file to write")
    if args.ijb is not None:
        return evaluate_ijb(args, out)
    if args.images is not None and not Path(args.images).is_dir():
        raise NotADirectoryError(f"{args.images}: no such image folder (--images)")

    from kerasface.eval.embeddings import embed_pair_set, load_embedding_model
    from kerasface.eval.pairs import load_pair_set
    from kerasface.eval.provenance import provenance
    from kerasface.eval.verification import evaluate, roc_figure
    from kerasface.fileio import atomic_path, write_json_atomic

    pair_sets = [load_pair_set(path, images_dir=args.images) for path in args.pairs]
    for pair_set, name in zip(pair_sets, unique_names([p.name for p in pair_sets])):
        pair_set.name = name
    model = load_embedding_model(args.model, image_size=args.image_size, resize_mode=args.resize)
    results, timings = {}, {}
    for pair_set in pair_sets:
        start = time.perf_counter()
        first, second = embed_pair_set(model, pair_set, batch_size=args.batch_size, flip=args.flip,
                                       normalize=False, progress=not args.quiet)
        results[pair_set.name] = evaluate(first, second, pair_set.issame, pair_set.folds)
        timings[pair_set.name] = time.perf_counter() - start

    print(results_table(results))
    report = {
        "model": str(args.model), "flip": args.flip, "image_size": list(model.image_size),
        "resize_mode": model.resize_mode, "protocol": PAIRS_PROTOCOL,
        "provenance": provenance(model, {p.name: p.source for p in pair_sets if Path(p.source).is_file()},
                                 args.flip, PAIRS_PROTOCOL),
        "sets": {name: {"source": p.source, "folds": p.num_folds, "seconds": round(timings[name], 3),
                        **r.to_dict()} for (name, r), p in zip(results.items(), pair_sets)},
    }  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    figure_path = roc_path(out)
    with atomic_path(figure_path) as tmp:
        roc_figure(results).savefig(tmp, format="png")
        write_json_atomic(out, report)
    print(f"wrote {out} and {figure_path}")
    return 0


def evaluate_ijb(args, out: Path) -> int:
    """The --ijb branch: IJB 1:1 and 1:N figures to FILE.json, the ROC to FILE.roc.png."""
    from kerasface.eval.embeddings import load_embedding_model
    from kerasface.eval.figures import save_png
    from kerasface.eval.ijb import evaluate_ijb as run, identification_table, ijb_roc_figure, ijb_table, load_ijb
    from kerasface.eval.provenance import provenance
    from kerasface.fileio import write_json_atomic

    ijb = load_ijb(args.ijb, args.ijb_set)
    model = load_embedding_model(args.model, image_size=args.image_size, resize_mode=args.resize)
    record = provenance(model, {f"{ijb.name}/{path.name}": path for path in ijb.files.values()}, args.flip,
                        IJB_PROTOCOL, detector_score=not args.no_detector_score)
    features = Path(args.ijb_features) if args.ijb_features else out.with_name(out.stem + ".features")
    start = time.perf_counter()
    result = run(model, ijb, features, flip=args.flip, detector_score=not args.no_detector_score,
                 batch_size=args.batch_size, chunk_size=args.ijb_chunk, progress=not args.quiet,
                 run={"landmarks_sha256": record["files"][f"{ijb.name}/{ijb.files['landmarks'].name}"]["sha256"]})
    name = f"{Path(args.model).stem}-{ijb.name}"
    print(ijb_table({name: result}))
    if result.identification is not None:
        print(identification_table({name: result}))
    report = {"model": str(args.model), "flip": args.flip, "image_size": list(model.image_size),
              "protocol": IJB_PROTOCOL, "provenance": record, "features": str(features),
              "seconds": round(time.perf_counter() - start, 3), **result.to_dict()}
    out.parent.mkdir(parents=True, exist_ok=True)
    figure_path = roc_path(out)
    save_png(ijb_roc_figure({name: result}), figure_path)
    write_json_atomic(out, report)
    print(f"wrote {out} and {figure_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
