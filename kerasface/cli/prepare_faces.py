"""A raw photo folder (one sub-folder per identity) -> aligned faces in the same structure.

    kerasface-prepare-faces SRC DST [--size 112] [--mode largest|center|all]
                            [--fallback none|center-crop] [--workers N]

Each image's faces are found with MTCNN and warped onto the ArcFace template (--size 112:
112x112; 112x96: the 96-wide variant; --method crop: a box crop with --margin instead). Outputs
keep their name and format; files already in DST are skipped, so a rerun after Ctrl-C or a crash
completes the rest. SRC is never written to. DST/summary.json and the printed summary list the
files aligned, without a face, centre-cropped, with several faces (and the one kept),
unreadable, skipped as done, and the entries ignored.

Benchmark photos (LFW and the like: the subject in the middle, other people around) need
--mode center, and --fallback center-crop keeps a pair set complete, as insightface prepares
LFW. Text files beside the identity folders (pairs.txt) are copied into DST.
"""

import argparse
import json
import sys
from pathlib import Path

from kerasface.cli.common import add_debug_argument, cli_main, positive_float, positive_int


@cli_main
def main(argv=None) -> int:
    from kerasface.faces.align import FALLBACKS, METHODS
    from kerasface.faces.detect import MODES

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", help="raw image folder: SRC/<identity>/<image>")
    parser.add_argument("dst", help="output folder (created; must lie outside SRC)")
    parser.add_argument("--size", default="112", help="face size: N (square) or HxW, e.g. 112x96 (default 112)")
    parser.add_argument("--mode", choices=MODES, default="largest",
                        help="largest: the largest face of each image (default); center: the face nearest "
                             "the image centre, weighted by size (area - 2 x squared distance; benchmark "
                             "photos such as LFW); all: every face")
    parser.add_argument("--method", choices=METHODS, default="align",
                        help="align: 5-point similarity onto the template (default); crop: box crop with margin")
    parser.add_argument("--fallback", choices=FALLBACKS, default="none",
                        help="for images without a face: none: no output (default); center-crop: "
                             "insightface's centre crop, listed separately in the summary")
    parser.add_argument("--margin", type=float, default=0.2, help="crop margin per side, fraction of the box (0.2)")
    parser.add_argument("--workers", type=positive_int, default=4,
                        help="threads that read, align and write images (default 4); detection runs in batches")
    parser.add_argument("--min-face-size", type=positive_float, default=20, help="smallest face in pixels (20)")
    parser.add_argument("--threshold", type=float, default=0.9, help="detection confidence threshold (0.9)")
    parser.add_argument("--max-side", type=positive_int, default=1280,
                        help="detect on larger images at this longer side (default 1280; faces are cut "
                             "from the full-resolution image)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_debug_argument(parser)
    args = parser.parse_args(argv)

    from kerasface.faces.prepare import SUMMARY_FILE, prepare_faces, summary_text

    try:
        summary = prepare_faces(args.src, args.dst, size=args.size, mode=args.mode, method=args.method,
                                margin=args.margin, fallback=args.fallback, workers=args.workers, min_face_size=args.min_face_size,
                                threshold=args.threshold, max_side=args.max_side, progress=not args.quiet)
    except KeyboardInterrupt:
        written = Path(args.dst) / SUMMARY_FILE
        if written.is_file():
            summary = json.loads(written.read_text())
            if not summary.get("complete", True):
                print(summary_text(summary))
                print(f"wrote {written}; run the same command again to complete the rest")
        raise
    print(summary_text(summary))
    print(f"wrote {summary['dst']}/{SUMMARY_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
