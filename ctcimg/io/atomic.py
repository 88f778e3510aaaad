"""Atomic file writes (write to a temporary name beside the target, then rename), and strict JSON.

A reader (or a resumed batch) sees either the old file, the complete new file, or
nothing; never a half-written one, even when the process is killed mid-write.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np


def write_atomic(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(handle)`` on a temporary file, fsync it, then rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """Write UTF-8 text to ``path`` atomically."""
    write_atomic(path, lambda stream: stream.write(text.encode("utf-8")))


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write bytes to ``path`` atomically."""
    write_atomic(path, lambda stream: stream.write(data))


def to_strict_json(value: Any, **dumps_options: Any) -> str:
    """``json.dumps(value)`` as strict JSON: every NaN or ±Infinity float becomes ``null``.

    Python's json writes ``NaN`` and ``Infinity``, which are not JSON and which strict
    parsers (browsers' ``JSON.parse``, jq, most languages) refuse; ctcimg writes ``null``
    for a number that is not defined (e.g. a ratio over zero cells) instead. NumPy scalars
    and arrays are converted to Python numbers and lists.
    """
    return json.dumps(_finite_or_none(value), allow_nan=False, **dumps_options)


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(item) for item in value]
    if isinstance(value, np.ndarray):
        return _finite_or_none(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json_atomic(path: Path, value: Any) -> None:
    """Write ``value`` to ``path`` atomically as strict indented JSON (:func:`to_strict_json`)."""
    write_text_atomic(path, to_strict_json(value, indent=2) + "\n")
