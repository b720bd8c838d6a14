"""Import TensorFlow without its start-up notice that oneDNN is on.

TensorFlow prints "oneDNN custom operations are on ..." (twice, each after absl's "All log
messages before absl::InitializeLog() ..." line) whatever ``TF_CPP_MIN_LOG_LEVEL`` says. kerasface
turns oneDNN on itself, so it leaves that notice out: a one-shot import hook runs TensorFlow's
import with file descriptor 2 sent to a temporary file, then writes every other line of it to
stderr. The hook acts on the first import of ``tensorflow`` only and then removes itself.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import sys
import tempfile

NOTICE_LINES = ("oneDNN custom operations are on",
                "All log messages before absl::InitializeLog() is called are written to STDERR")


@contextlib.contextmanager
def stderr_without(fragments=NOTICE_LINES):
    """Send file descriptor 2 to a temporary file inside the block; afterwards write to stderr
    every captured line that contains none of ``fragments``."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode(errors="replace")
            kept = [line for line in text.splitlines(keepends=True) if not any(f in line for f in fragments)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, inner, finder):
        self.inner, self.finder = inner, finder

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module):
        self.finder.remove()
        module.__loader__ = module.__spec__.loader = self.inner
        with stderr_without():
            self.inner.exec_module(module)


class QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Meta-path finder for ``tensorflow`` whose loader runs the real one inside ``stderr_without``."""

    def __init__(self):
        self._finding = False

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow" or self._finding:
            return None
        self._finding = True
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self._finding = False
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader, self)
        return spec

    def install(self) -> None:
        if "tensorflow" not in sys.modules and not any(isinstance(f, QuietTensorFlowImport) for f in sys.meta_path):
            sys.meta_path.insert(0, self)

    def remove(self) -> None:
        if self in sys.meta_path:
            sys.meta_path.remove(self)
