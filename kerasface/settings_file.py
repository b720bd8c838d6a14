"""Settings files: one mapping per file, JSON for ``.json`` and YAML otherwise."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def read_settings_file(path, what: str = "settings file") -> dict:
    """The mapping in ``path``; errors name ``what`` and the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path}: no such file")
    try:
        text = path.read_text()
        if path.suffix.lower() == ".json":
            values = json.loads(text)
        else:
            import yaml

            values = yaml.safe_load(text)
    except Exception as error:
        raise ValueError(f"{what} {path} is not valid {path.suffix or 'YAML'}: {error}") from error
    if not isinstance(values, dict):
        raise ValueError(f"{what} {path}: expected a mapping, got {type(values).__name__}")
    return values


def json_object(text: str) -> dict:
    """argparse type: a JSON object (``{...}``)."""
    try:
        value = json.loads(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON: {text!r} ({error})") from error
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object {{...}}, got {text!r}")
    return value
