"""The text kernels (ctcimg.kernels.text) write what Python's formatting writes, and the
events.csv writer built on them what the csv module writes."""

from __future__ import annotations

import numpy as np
import pytest

from ctcimg.kernels import text
from ctcimg.results import _csv_text, _quoted_csv_text


def _general(values: np.ndarray) -> tuple[list[str | None], np.ndarray]:
    fields = np.zeros((len(values), text.GENERAL_WIDTH), dtype=np.uint8)
    lengths = np.zeros(len(values), dtype=np.int64)
    unsure = np.zeros(len(values), dtype=bool)
    text.format_general(values, text.EXACT_POWERS, fields, lengths, unsure)
    return [None if unsure[i] else bytes(fields[i, :lengths[i]]).decode("ascii")
            for i in range(len(values))], unsure


def _python_general(value: float) -> str:
    return "" if value != value else f"{value:.6g}"


SPECIAL = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-5, 1e-4, 9.99999e-5, 999999.0, 1e6,
           999999.5, 9999995.0, 1234565.0, 100000.0, 99999.95, 0.5, 1.5, 2.5, 12345.65,
           123456789.0, 1e-300, 5e-324, 1.7e308, 0.1, 0.2, 0.3, 1 / 3, 2 / 3, 4095.0, 1e22,
           1e23, -7.5e-7, 65535.0, 0.00123456, 0.000123456]


def test_general_format_equals_python_where_sure():
    rng = np.random.default_rng(11)
    random = rng.normal(0, 1, 100_000) * 10.0 ** rng.integers(-15, 16, 100_000)
    values = np.concatenate([SPECIAL, random, np.round(random, 2), np.round(random),
                             random.astype(np.float32).astype(np.float64),
                             np.nextafter(np.array(SPECIAL[5:]), np.inf),
                             np.nextafter(np.array(SPECIAL[5:]), -np.inf)])
    got, unsure = _general(values)
    wrong = [(v, g) for v, g in zip(values.tolist(), got, strict=True)
             if g is not None and g != _python_general(v)]
    assert wrong == []
    # unsure only where float64 rounding cannot decide: rare among values of any magnitude
    # a table holds (exact halves of integers above 10^6 are true ties)
    typical = np.abs(random) > 1e-12
    assert unsure[len(SPECIAL):len(SPECIAL) + len(random)][typical].mean() < 1e-3


def test_general_format_flags_what_it_cannot_decide():
    got, unsure = _general(np.array([1234565.0, 5e-324, 1e300, 999999.5, 1.5]))
    assert unsure.tolist() == [True, True, True, True, False]
    assert got[-1] == "1.5"


def test_integers_equal_str():
    values = np.array([0, 7, -7, 10, -10, 123456789, 2**63 - 1, -2**63], dtype=np.int64)
    fields = np.zeros((len(values), text.INTEGER_WIDTH), dtype=np.uint8)
    lengths = np.zeros(len(values), dtype=np.int64)
    text.format_integers(values, fields, lengths)
    assert [bytes(fields[i, :lengths[i]]).decode() for i in range(len(values))] == \
        [str(v) for v in values.tolist()]


@pytest.mark.parametrize("rows", [0, 1, 300])
def test_csv_of_every_column_type_equals_the_csv_module(rows):
    rng = np.random.default_rng(rows)
    reasons = np.array(["", "too_small", "µm-sized", None], dtype=object)
    columns = {
        "event_id": np.arange(1, rows + 1, dtype=np.int64),
        "frame": rng.integers(-3, 300, rows).astype(np.int32),
        "count": rng.integers(0, 255, rows).astype(np.uint8),
        "x_um": rng.normal(0, 1, rows) * 10.0 ** rng.integers(-8, 9, rows),
        "single": rng.random(rows).astype(np.float32),
        "is_ctc": rng.random(rows) < 0.3,
        "reject_reason": reasons[rng.integers(0, 4, rows)],
        "her2_score": np.array(["3+", "0"] * rows, dtype=object)[:rows],
        "unicode": np.array(["a", "ü"] * rows)[:rows],
        "ties": np.full(rows, 1234565.0),
    }
    if rows:
        columns["x_um"][::7] = np.nan
    assert _csv_text(columns) == _quoted_csv_text(columns)
