"""The HTTP face service: embed, verify and identify faces, enroll and remove people.

    kerasface-serve --model M --gallery gallery.npz [--host 127.0.0.1] [--port 8000] [--index hnsw]
        [--threshold T] [--max-upload-mb 20]

--model: any embedding model the kit trains or exports (.keras file, run folder, SavedModel).
--gallery: a gallery file of kerasface-identify enroll (checked against the model), or a new
path, written at the first enrolment. Endpoints: POST /embed, /verify, /identify, /enroll,
GET and DELETE /people/{name}, GET /health; OpenAPI docs at /docs. Images as multipart files or base64
JSON. The similarity threshold of /verify and /identify: --threshold, else the run report's
verification threshold when the model is a run folder with one, else 0.35 (/health says which).
Each enrolment and removal is on disk (the gallery file or its journal) before it is answered.
Images of more than 64 megapixels are refused (OPENCV_IO_MAX_IMAGE_PIXELS, unless set).
Needs the serve extra: pip install 'kerasface[serve]'.
"""

import argparse
import os
import sys

from kerasface.cli.common import add_debug_argument, cli_main, positive_float, positive_int
from kerasface.faces.index import DEFAULT_KIND, KINDS


@cli_main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help=".keras file, run folder or SavedModel folder")
    parser.add_argument("--gallery", required=True, help="gallery file (.npz); created at the first enrolment")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument("--port", type=positive_int, default=8000, help="port (8000)")
    parser.add_argument("--index", choices=KINDS, default=DEFAULT_KIND, help=f"gallery index ({DEFAULT_KIND})")
    parser.add_argument("--threshold", type=float, help="cosine similarity for 'same person' (default: see above)")
    parser.add_argument("--image-size", type=positive_int, help="face size for models that accept any size")
    parser.add_argument("--min-face-size", type=positive_float, default=20, help="smallest face in pixels (20)")
    parser.add_argument("--detection-threshold", type=float, default=0.9, help="MTCNN confidence (0.9)")
    parser.add_argument("--max-batch", type=positive_int, default=32, help="images or faces per model call (32)")
    parser.add_argument("--max-wait-ms", type=positive_float, default=5.0,
                        help="how long a request waits for others to batch with (5 ms)")
    parser.add_argument("--max-upload-mb", type=positive_float, default=20, help="largest request body (20 MB)")
    add_debug_argument(parser)
    args = parser.parse_args(argv)

    from kerasface.serve import MAX_IMAGE_PIXELS

    os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_IMAGE_PIXELS))
    from kerasface.errors import BadInputError
    from kerasface.serve.http import EXTRA_HINT, create_app
    from kerasface.serve.service import Service, Settings

    try:
        import uvicorn
    except ImportError:
        raise BadInputError(EXTRA_HINT) from None
    service = Service(Settings(args.model, args.gallery, args.index, args.threshold, args.image_size,
                               args.min_face_size, args.detection_threshold, args.max_batch, args.max_wait_ms))
    app = create_app(service, max_upload_mb=args.max_upload_mb)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
