"""Face identification: enroll people into a gallery, then name the faces of images, videos or a camera.

    kerasface-identify enroll --model M --gallery DIR --out gallery.npz [--flip] [--index [flat|ivf|ivf-pq|hnsw]]
    kerasface-identify run --model M --gallery gallery.npz INPUT [--out DIR] [--threshold T] [--index ...]

--model: any embedding model the kit trains or exports (.keras file, run folder, SavedModel, .onnx or
.tflite file from kerasface-export: read as evaluation reads it, kerasface.eval.embeddings).
enroll: DIR has one sub-folder of photos per person; the largest face of each photo is aligned
and embedded, and each person's embeddings are averaged. The gallery file records the model and
refuses a different one.
run: INPUT is an image, a folder of images, a video file or a camera index (0, 1, ...). Every
face is matched: the person and the cosine similarity, or "unknown" below --threshold (default:
the run report's verification threshold when the model is a run folder that has one, else 0.35).
With --out: annotated images or <name>.mp4 and log.jsonl (one JSON line per frame); without it
the JSON lines go to standard output. Frames per second are shown while it runs; Ctrl-C stops a
stream and keeps what was processed.
--index: search the gallery through a FAISS index (the serve extra) stored in the gallery file:
flat (exact), ivf, ivf-pq or hnsw (approximate, for large galleries: ivf-pq for a million faces;
--index alone: hnsw). Without it a
gallery is searched exactly in NumPy, or through the index it was enrolled with.
"""

import argparse
import sys
from pathlib import Path

from kerasface.cli.common import add_debug_argument, cli_main, positive_float, positive_int
from kerasface.faces.index import DEFAULT_KIND, KINDS


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True,
                        help=".keras file, run folder, SavedModel folder, .onnx or .tflite file")
    parser.add_argument("--image-size", type=positive_int, help="face size for models that accept any size")
    parser.add_argument("--min-face-size", type=positive_float, default=20, help="smallest face in pixels (20)")
    parser.add_argument("--detection-threshold", type=float, default=0.9,
                        help="MTCNN confidence threshold (default 0.9)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--index", nargs="?", const=DEFAULT_KIND, choices=KINDS,
                        help=f"FAISS index to search the gallery with (--index alone: {DEFAULT_KIND})")
    add_debug_argument(parser)


def _parser() -> argparse.ArgumentParser:
    from kerasface.faces.align import METHODS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    enroll = commands.add_parser("enroll", help="build a gallery from DIR/<person>/<photo>")
    _common(enroll)
    enroll.add_argument("--gallery", required=True, help="folder with one sub-folder of photos per person")
    enroll.add_argument("--out", required=True, help="gallery file to write (.npz)")
    enroll.add_argument("--flip", action="store_true", help="embed each face plus its mirror image")
    enroll.add_argument("--method", choices=METHODS, default="align",
                        help="align (5-point, default) or crop (box crop, for models not trained on aligned faces)")
    enroll.add_argument("--margin", type=float, default=0.2, help="crop margin per side (--method crop)")
    run = commands.add_parser("run", help="identify the faces of an image, folder, video or camera")
    _common(run)
    run.add_argument("--gallery", required=True, help="gallery file of 'enroll'")
    run.add_argument("input", help="image, folder of images, video file or camera index")
    run.add_argument("--out", help="folder for annotated images/video and log.jsonl")
    run.add_argument("--threshold", type=float, help="cosine similarity below which a face is unknown")
    run.add_argument("--max-frames", type=positive_int, help="stop after this many frames")
    return parser


def _enroll(args) -> int:
    from kerasface.errors import BadInputError
    from kerasface.eval.embeddings import load_embedding_model
    from kerasface.faces.detect import FaceDetector
    from kerasface.faces.gallery import enroll, gallery_files

    out = Path(args.out)
    if out.is_dir():
        raise BadInputError(f"{out}: is a folder; --out names the gallery file to write")
    gallery_files(args.gallery)
    model = load_embedding_model(args.model, image_size=args.image_size)
    detector = FaceDetector(min_face_size=args.min_face_size, threshold=args.detection_threshold)
    gallery, problems = enroll(model, args.gallery, detector, method=args.method, margin=args.margin,
                               flip=args.flip, progress=not args.quiet)
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    if args.index is not None:
        gallery.build_index(args.index)
    out.parent.mkdir(parents=True, exist_ok=True)
    gallery.save(out)
    for name, count in zip(gallery.names, gallery.counts):
        print(f"{name}: {count} photo(s)")
    searched = f", {gallery.index.kind} index" if gallery.index is not None else ""
    print(f"wrote {out}: {len(gallery.names)} people, model {gallery.model}{searched}")
    return 0


def _run(args) -> int:
    from kerasface.errors import BadInputError
    from kerasface.eval.embeddings import load_embedding_model
    from kerasface.faces.app import DEFAULT_THRESHOLD, Identifier, Source, identify, report_threshold
    from kerasface.faces.detect import FaceDetector
    from kerasface.faces.gallery import Gallery

    if args.out is not None and Path(args.out).exists() and not Path(args.out).is_dir():
        raise BadInputError(f"{args.out}: exists and is not a folder (--out names a folder)")
    gallery = Gallery.load(args.gallery)
    if args.index is not None and (gallery.index is None or gallery.index.kind != args.index):
        gallery.build_index(args.index)
    source = Source(args.input)
    if args.out is not None and source.kind == "folder" and source.root.resolve() in Path(args.out).resolve().parents:
        raise BadInputError(f"{args.out}: the output folder must lie outside the input folder {args.input}")
    model = load_embedding_model(args.model, image_size=args.image_size)
    gallery.check_model(model, where=args.gallery)
    if args.threshold is not None:
        threshold, where = args.threshold, "--threshold"
    else:
        threshold, where = report_threshold(args.model) or (DEFAULT_THRESHOLD, "default")
    print(f"{len(gallery.names)} people, similarity threshold {threshold:.3f} ({where})", file=sys.stderr)
    detector = FaceDetector(min_face_size=args.min_face_size, threshold=args.detection_threshold)
    stats = identify(Identifier(model, gallery, detector, threshold), source, out=args.out,
                     progress=not args.quiet, max_frames=args.max_frames)
    stopped = " (stopped by Ctrl-C)" if stats["stopped"] else ""
    print(f"{stats['frames']} frame(s), {stats['faces']} face(s), {stats['known']} known, "
          f"{stats['unreadable']} unreadable in {stats['seconds']:.1f} s: {stats['frames_per_s']} frames/s{stopped}",
          file=sys.stderr)
    if args.out is not None:
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


@cli_main
def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    return _enroll(args) if args.command == "enroll" else _run(args)


if __name__ == "__main__":
    sys.exit(main())
