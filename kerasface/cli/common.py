"""Error handling shared by every kerasface command.

Usage in a command module::

    from kerasface.cli.common import add_debug_argument, cli_main

    @cli_main
    def main(argv=None) -> int:
        parser = argparse.ArgumentParser(...)
        add_debug_argument(parser)
        args = parser.parse_args(argv)
        ...
        return 0

or, without the decorator, ``return run_main(body, argv)`` where ``body(argv) -> int | None``.

A failure on bad input (BadInputError, ValueError, KeyError, RuntimeError, OSError and its
subclasses such as FileNotFoundError, FileExistsError, NotADirectoryError) prints
``error: <message>`` to stderr, no traceback, and gives exit status 1. ``--debug`` anywhere in
the arguments (or KERASFACE_DEBUG=1) re-raises instead, so the full traceback is shown.
Ctrl-C gives ``interrupted`` and status 130. Other exceptions are bugs and keep their traceback.

``positive_int``, ``non_negative_int`` and ``positive_float`` are argparse types that refuse
out-of-range numbers with argparse's own usage error (status 2).
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import sys
from collections.abc import Callable, Sequence

INPUT_ERRORS = (ValueError, KeyError, RuntimeError, OSError)
_TF_OP_DECORATION = re.compile(r"\{\{function_node [^}]*\}\}|\[Op:[^\]]*\]( name:\s*\S*)?")

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


def add_debug_argument(parser: argparse.ArgumentParser) -> None:
    """Add --debug: show the full traceback instead of the one-line error."""
    parser.add_argument("--debug", action="store_true", help="on failure show the full traceback")


def debug_requested(argv: Sequence[str] | None = None) -> bool:
    """True when --debug is among the arguments (sys.argv[1:] when argv is None) or KERASFACE_DEBUG is set."""
    args = sys.argv[1:] if argv is None else argv
    return "--debug" in args or os.environ.get("KERASFACE_DEBUG", "") not in ("", "0")


def error_message(error: BaseException) -> str:
    """The user-facing text of an exception, without Python's quoting and errno decorations."""
    if isinstance(error, KeyError) and len(error.args) == 1 and isinstance(error.args[0], str):
        return error.args[0]
    if isinstance(error, OSError) and error.strerror and error.filename is not None:
        text = f"{error.strerror}: {error.filename}"
        if error.filename2 is not None:
            text += f" -> {error.filename2}"
        return text
    message = getattr(error, "message", None)
    text = (message if isinstance(message, str) and message else str(error)).strip()
    if text.startswith("in user code:"):
        text = text.splitlines()[-1].strip()
    text = _TF_OP_DECORATION.sub("", text).strip()
    return text or type(error).__name__


def _bounded(kind: type, low, strict: bool):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a{'n' if kind is int else ''} {kind.__name__}: {text!r}") from None
        if not (value > low if strict else value >= low):
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {low}, got {text}")
        return value

    return parse


positive_int = _bounded(int, 0, strict=True)
non_negative_int = _bounded(int, 0, strict=False)
positive_float = _bounded(float, 0.0, strict=True)


def _input_errors() -> tuple[type[BaseException], ...]:
    tf = sys.modules.get("tensorflow")
    op_error = getattr(getattr(tf, "errors", None), "OpError", None)
    return INPUT_ERRORS + ((op_error,) if isinstance(op_error, type) else ())


def run_main(main_body: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """Run main_body(argv) and turn bad-input failures into ``error: ...`` and exit status 1."""
    debug = debug_requested(argv)
    try:
        status = main_body(argv)
    except KeyboardInterrupt:
        if debug:
            raise
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:
        if debug or not isinstance(error, _input_errors()):
            raise
        print(f"error: {error_message(error)}", file=sys.stderr)
        return EXIT_ERROR
    return 0 if status is None else int(status)


def cli_main(main_body: Callable[[Sequence[str] | None], int | None]) -> Callable[[Sequence[str] | None], int]:
    """Decorator form of run_main: ``main(argv=None)`` returns the exit status instead of raising."""

    @functools.wraps(main_body)
    def main(argv: Sequence[str] | None = None) -> int:
        return run_main(main_body, argv)

    return main
