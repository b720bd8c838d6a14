"""Load test of a running kerasface-serve on this machine: mixed /identify and /enroll.

    kerasface-load-test-serve [--url http://127.0.0.1:8000] [--clients 4] [--seconds 10]
        [--enroll-fraction 0.2] [--image PHOTO] [--keep]

--clients clients send requests for --seconds (at most 64 clients, 600 s; only a service on
127.0.0.1 / localhost); each request is /enroll under a new name with probability
--enroll-fraction, else /identify, of --image (default: matplotlib's grace_hopper.jpg). Prints
requests/s, p50/p99 latency and errors, overall and per endpoint, then checks that every
acknowledged enrolment is in the gallery (exit status 1 if one is missing) and removes them
again unless --keep. Needs the serve extra.
"""

import argparse
import asyncio
import json
import sys
from pathlib import Path

from kerasface.cli.common import add_debug_argument, cli_main, positive_float, positive_int


@cli_main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the service (http://127.0.0.1:8000)")
    parser.add_argument("--clients", type=positive_int, default=4, help="concurrent clients (4)")
    parser.add_argument("--seconds", type=positive_float, default=10.0, help="how long to send (10 s)")
    parser.add_argument("--enroll-fraction", type=float, default=0.2, help="share of requests that enroll (0.2)")
    parser.add_argument("--image", help="photo with a face (default: matplotlib's grace_hopper.jpg)")
    parser.add_argument("--keep", action="store_true", help="leave the enrolled test people in the gallery")
    add_debug_argument(parser)
    args = parser.parse_args(argv)

    from kerasface.errors import BadInputError
    from kerasface.serve.load_test import load_test, local_url

    local_url(args.url)
    if args.image is None:
        import matplotlib.cbook

        args.image = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    path = Path(args.image)
    if not path.is_file():
        raise BadInputError(f"{path}: no such image file")
    result = asyncio.run(load_test(args.url, path.read_bytes(), clients=args.clients, seconds=args.seconds,
                                   enroll_fraction=args.enroll_fraction, keep=args.keep))
    print(f"{result['requests']} requests in {result['seconds']} s: {result['requests_per_s']} requests/s")
    for kind in ("all", "identify", "enroll"):
        row = result[kind]
        print(f"  {kind:8s} {row['requests']:6d} requests, p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms, "
              f"{row['errors']} errors")
    enrolments = result["enrolments"]
    print(f"acknowledged enrolments: {enrolments['acknowledged']}, missing from the gallery: "
          f"{len(enrolments['missing'])}")
    print(json.dumps(result))
    return 1 if enrolments["missing"] else 0


if __name__ == "__main__":
    sys.exit(main())
