"""Print a dataset's label balance and identity counts, and check that every image decodes.

    kerasface-data-stats --data PATH [--verify full|header|none]

PATH is an image folder (one sub-folder per identity), a CSV (path column + label columns),
a TFRecord folder, or a folder holding attributes.csv (such as the demo dataset). Files that
do not decode are listed by name; the exit status is 1 when any were found. Entries that are
not samples (pairs.txt, .DS_Store, empty identity folders) are counted as ignored. Nothing is
written.
"""

import argparse
import sys

from kerasface.cli.common import add_debug_argument, cli_main


@cli_main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="image folder, CSV file or TFRecord folder")
    parser.add_argument("--verify", default="full", choices=["full", "header", "none"],
                        help="full: decode every image (default); header: signature and end marker only")
    parser.add_argument("--path-column", default="path", help="CSV column holding image paths (default path)")
    parser.add_argument("--identity-column", default="identity",
                        help="CSV column holding identities (default identity; '' for none)")
    add_debug_argument(parser)
    args = parser.parse_args(argv)

    from kerasface.data.stats import dataset_report

    text, problems = dataset_report(args.data, verify=args.verify, path_column=args.path_column,
                                    identity_column=args.identity_column or None)
    print(text)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
