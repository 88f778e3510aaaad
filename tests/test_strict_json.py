"""Every JSON file ctcimg writes is strict JSON: NaN and ±Infinity are written as null."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from conftest import make_cartridge

from ctcimg.io.atomic import to_strict_json, write_json_atomic
from ctcimg.score import SUMMARY_FILE, score_cartridge


def _strict_loads(text: str):
    def refuse(constant):
        raise AssertionError(f"{constant} in JSON output")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_numbers_become_null_at_any_depth():
    value = {"a": math.nan, "b": [1.5, math.inf, {"c": -math.inf}], "d": (np.float32("nan"),),
             "e": np.array([1.0, np.nan]), "f": np.int64(3), "g": "NaN", "h": None, "i": True}
    assert _strict_loads(to_strict_json(value)) == {
        "a": None, "b": [1.5, None, {"c": None}], "d": [None], "e": [1.0, None], "f": 3,
        "g": "NaN", "h": None, "i": True}


def test_plain_json_would_have_written_nan():  # the case the helper exists for
    with pytest.raises(AssertionError, match="NaN"):
        _strict_loads(json.dumps({"a": math.nan}))


def test_result_with_nan_fields_writes_strict_summary_json(tmp_path):
    folder, _ = make_cartridge(tmp_path)
    result = score_cartridge(folder, thumbnails=False)
    info = {**result.info, "pixel_size_um": math.nan,
            "reviewer": {"reviewer_ctcs": 2, "agreement": np.float64("inf")}}
    result = dataclasses.replace(result, info=info)
    out = result.to_dir(tmp_path / "out")
    summary = _strict_loads((out / SUMMARY_FILE).read_text())
    assert summary["pixel_size_um"] is None
    assert summary["reviewer"] == {"reviewer_ctcs": 2, "agreement": None}
    assert summary["ctc_count"] == result.ctc_count


def test_write_json_atomic_is_indented_strict_json(tmp_path):
    path = tmp_path / "p.json"
    write_json_atomic(path, {"edges": [1.0, math.nan]})
    assert path.read_text() == '{\n  "edges": [\n    1.0,\n    null\n  ]\n}\n'
