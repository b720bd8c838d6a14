"""A dataset's health report: sizes, label and identity balance, the files that fail and the
entries ignored as no samples (``pairs.txt``, ``.DS_Store``, empty identity folders)."""

from __future__ import annotations

import warnings
from pathlib import Path

from kerasface.data.balance import balance_table
from kerasface.data.readers import read_csv, read_dataset
from kerasface.data.spec import ignored_lines


def dataset_report(path, verify: str = "full", path_column: str = "path",
                   identity_column: str | None = "identity") -> tuple[str, list]:
    """(text, skipped): the report for ``path`` and the list of unusable inputs it found."""
    kwargs = dict(skip_bad=True, verify=verify, progress=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if Path(path).suffix.lower() == ".csv":
            _, spec = read_csv(path, path_column=path_column, identity_column=identity_column, **kwargs)
        else:
            _, spec = read_dataset(path, **kwargs)
    lines = [spec.summary().split("\n")[0], "", balance_table(spec)]
    if spec.skipped:
        lines += ["", f"{len(spec.skipped)} unusable input(s):"] + [f"  {s}" for s in spec.skipped]
    else:
        lines += ["", f"all {len(spec.samples)} images usable (verify={verify})"]
    if spec.ignored:
        lines += [""] + ignored_lines(spec.ignored, spec.source)
    return "\n".join(lines), spec.skipped
