"""Numbers as decimal text in bulk, byte for byte as Python formats them, for result tables.

Python formats one float in ~0.3 µs; an events table of a full cartridge has ~4·10^5 of
them. These kernels write each value's text into a row of a byte matrix:

- :func:`format_general` — ``format(v, ".6g")`` (``printf``'s ``%.6g``), NaN as an empty
  field. The six significant digits are rounded in float64 from ``|v| · 10^k`` (one
  rounding, ``10^k`` exact for ``|k| <= 22``); a value whose exact rounding that cannot
  decide — within two rounding errors of a half, or of a change of exponent, or beyond
  the exact powers — is flagged for the caller, who formats it with Python.
- :func:`format_integers` — ``str(int(v))``.

:func:`place_fields` then lays the fields of one column into the rows of a CSV buffer.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

#: Widest field :func:`format_general` writes ("-1.23456e-308") and :func:`format_integers`.
GENERAL_WIDTH = 16
INTEGER_WIDTH = 20
#: 10^0 … 10^22: every one is a double exactly.
EXACT_POWERS = np.array([10.0 ** k for k in range(23)])

_ZERO = 48  # ord("0")


@njit(cache=True, nogil=True)
def _scaled(a, k, powers):
    """``a · 10^k`` with one rounding (``|k| <= 22``)."""
    if k >= 0:
        return a * powers[k]
    return a / powers[-k]


@njit(cache=True, nogil=True)
def format_general(values, powers, fields, lengths, unsure):
    """``format(v, ".6g")`` of each float64 ``values[i]`` into ``fields[i, :lengths[i]]``
    (ASCII); NaN gives length 0; ``unsure[i]`` is set where Python must format it."""
    digit_buffer = np.empty(6, dtype=np.int64)
    for i in range(values.shape[0]):
        v = values[i]
        out = fields[i]
        lengths[i] = 0
        unsure[i] = False
        if v != v:
            continue
        n = 0
        if math.copysign(1.0, v) < 0.0:
            out[0] = 45  # "-"
            n = 1
        a = abs(v)
        if a == 0.0:
            out[n] = _ZERO
            lengths[i] = n + 1
            continue
        if a == math.inf:
            out[n], out[n + 1], out[n + 2] = 105, 110, 102  # "inf"
            lengths[i] = n + 3
            continue
        exponent = int(math.floor(math.log10(a)))
        t = 0.0
        ok = True
        for _ in range(3):  # log10 may be one off near a power of ten
            k = 5 - exponent
            if k > 22 or k < -22:
                ok = False
                break
            t = _scaled(a, k, powers)
            margin = t * 2.3e-16  # two rounding errors of t
            if abs(t - 99999.5) <= margin or abs(t - 999999.5) <= margin:
                ok = False
                break
            if t >= 999999.5:
                exponent += 1
            elif t < 99999.5:
                exponent -= 1
            else:
                break
        if not ok or not 99999.5 <= t < 999999.5:
            unsure[i] = True
            continue
        whole = math.floor(t)
        fraction = t - whole
        if abs(fraction - 0.5) <= t * 2.3e-16:
            unsure[i] = True
            continue
        digits = int(whole) + (1 if fraction > 0.5 else 0)
        if digits == 1000000:
            digits = 100000
            exponent += 1
        lengths[i] = _write_general(out, n, digits, exponent, digit_buffer)


@njit(cache=True, nogil=True)
def _write_general(out, n, digits, exponent, d):
    """Write six significant ``digits`` (100000 … 999999) times ``10^(exponent - 5)`` as
    ``%g`` does from ``out[n]`` on (trailing zeros dropped; ``d``: room for 6 digits);
    returns the end."""
    for j in range(5, -1, -1):
        d[j] = digits % 10
        digits //= 10
    used = 6
    while used > 1 and d[used - 1] == 0:
        used -= 1
    if -4 <= exponent < 6:
        if exponent < 0:
            out[n] = _ZERO
            out[n + 1] = 46  # "."
            n += 2
            for _ in range(-exponent - 1):
                out[n] = _ZERO
                n += 1
            for j in range(used):
                out[n] = _ZERO + d[j]
                n += 1
            return n
        for j in range(exponent + 1):
            out[n] = _ZERO + d[j]
            n += 1
        if used > exponent + 1:
            out[n] = 46
            n += 1
            for j in range(exponent + 1, used):
                out[n] = _ZERO + d[j]
                n += 1
        return n
    out[n] = _ZERO + d[0]
    n += 1
    if used > 1:
        out[n] = 46
        n += 1
        for j in range(1, used):
            out[n] = _ZERO + d[j]
            n += 1
    out[n] = 101  # "e"
    out[n + 1] = 45 if exponent < 0 else 43  # "-" / "+"
    n += 2
    e = abs(exponent)
    if e >= 100:
        out[n] = _ZERO + e // 100
        n += 1
    out[n] = _ZERO + (e // 10) % 10
    out[n + 1] = _ZERO + e % 10
    return n + 2


@njit(cache=True, nogil=True)
def format_integers(values, fields, lengths):
    """``str(v)`` of each int64 ``values[i]`` into ``fields[i, :lengths[i]]``."""
    ten = np.uint64(10)
    reversed_digits = np.empty(INTEGER_WIDTH, dtype=np.uint8)
    for i in range(values.shape[0]):
        v = values[i]
        out = fields[i]
        n = 0
        if v < 0:
            out[0] = 45  # "-"
            n = 1
        # the magnitude as uint64: -v overflows for the smallest int64
        magnitude = np.uint64(v) if v >= 0 else np.uint64(-(v + 1)) + np.uint64(1)
        count = 0
        while True:
            reversed_digits[count] = np.uint8(_ZERO + magnitude % ten)
            count += 1
            magnitude //= ten
            if magnitude == 0:
                break
        for j in range(count):
            out[n + j] = reversed_digits[count - 1 - j]
        lengths[i] = n + count


@njit(cache=True, nogil=True)
def place_fields(out, row_ends, fields, lengths, separator):
    """Append field ``fields[i, :lengths[i]]`` and ``separator`` to row ``i`` of ``out``,
    whose row ``i`` is written up to ``row_ends[i]`` (advanced past them)."""
    for i in range(fields.shape[0]):
        end = row_ends[i]
        field = fields[i]
        for j in range(lengths[i]):
            out[end + j] = field[j]
        end += lengths[i]
        out[end] = separator
        row_ends[i] = end + 1
