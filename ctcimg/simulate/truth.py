"""The truth of a simulated cartridge: a record per object, ``objects.csv``, ``cartridge.json``.

Truth columns of ``objects.csv`` (:data:`OBJECT_COLUMNS`): object_id, frame, x/y in px
and µm, kind (:data:`KINDS`), her2_level (CTCs; −1 otherwise), her2_signal (the CTC's
level signal: mean background-free HER2 over the cell, *without* the sample's
nonspecific FITC), diameter_um, cluster_id (touching CTC clusters), cut_by_border,
in_edge_zone, reviewer_assigned; with confounders > 0 also context (``doublet``,
``leukocyte_cluster``, ``stuck`` or empty), defocused and dense (0/1, per frame) and
her2_nonspecific (the nonspecific FITC over the object, units as her2_signal). Without
confounders every output is byte-identical to the simulator before they existed
(:mod:`ctcimg.simulate.confounders`).

``cartridge.json`` records the spec, the storage options, the HER2 level signals, the
counts per kind (and per HER2 level and context), the reviewer's errors and, with
confounders, the per-sample draws and the defocused and dense frames.

Ground truth goes to ``out_dir/truth/<id>/`` — never inside the cartridge folder.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from ctcimg.io.atomic import write_json_atomic, write_text_atomic
from ctcimg.simulate.bodies import HER2_LEVEL_SIGNAL, HER2_LOG_SPREAD
from ctcimg.simulate.confounders import (
    CONFOUNDER_KINDS,
    CONTEXTS,
    _confounder_plan,
    sample_conditions,
)
from ctcimg.simulate.reviewer import PRESENTED_KINDS, REVIEWERS

#: Object kinds written to ``objects.csv``: ctc, leukocyte, the decoys of
#: :data:`~ctcimg.simulate.DECOY_RATE`, then :data:`~ctcimg.simulate.CONFOUNDER_KINDS` (only
#: with ``confounders`` > 0).
KINDS: tuple[str, ...] = (
    "ctc",
    "leukocyte",
    "ck_debris",
    "ck_cd45_double",
    "speck",
    "bare_nucleus",
    "nucleus_outside",
    *CONFOUNDER_KINDS,
)

#: Columns of ``objects.csv``; with ``confounders`` > 0 followed by :data:`CONFOUNDER_COLUMNS`.
OBJECT_COLUMNS: tuple[str, ...] = (
    "object_id", "frame", "x_px", "y_px", "x_um", "y_um", "kind", "her2_level",
    "her2_signal", "diameter_um", "cluster_id", "cut_by_border", "in_edge_zone",
    "reviewer_assigned",
)
#: Columns appended to ``objects.csv`` when ``confounders`` > 0.
CONFOUNDER_COLUMNS: tuple[str, ...] = ("context", "defocused", "dense", "her2_nonspecific")


@dataclass(frozen=True)
class SimulatedObject:
    """One simulated object, as written to ``objects.csv`` (pixels frame-local).

    ``bbox`` and ``presented`` are not written: ``presented`` marks an object CellSearch
    shows its reviewer as a DAPI+ CK+ candidate (an event in the XML). The last four
    fields are the confounder columns (see this module's docstring).
    """

    object_id: int
    frame: int
    x_px: float
    y_px: float
    kind: str
    her2_level: int
    her2_signal: float
    diameter_um: float
    cluster_id: int
    cut_by_border: bool
    in_edge_zone: bool
    reviewer_assigned: bool
    bbox: tuple[int, int, int, int]  # x1, y1, x2, y2 frame-local, clipped to the frame
    presented: bool = False
    context: str = ""
    defocused: bool = False
    dense: bool = False
    her2_nonspecific: float = 0.0
    ck_amplitude: float = 0.0  # CK stain amplitude (12-bit); not in objects.csv
    beyond_edge_band_px: float = math.inf  # centre's distance past the bright edge band's


def _write_truth(truth: Path, spec, objects, bits, encoding, compression,
                 reviewer: str = "default") -> dict[str, int]:
    px = spec.pixel_size_um
    confounded = spec.confounders > 0
    table = io.StringIO()
    writer = csv.writer(table)
    writer.writerow(OBJECT_COLUMNS + (CONFOUNDER_COLUMNS if confounded else ()))
    for o in objects:
        row = [
            o.object_id, o.frame, f"{o.x_px:.2f}", f"{o.y_px:.2f}",
            f"{o.x_px * px:.2f}", f"{o.y_px * px:.2f}", o.kind, o.her2_level,
            f"{o.her2_signal:.2f}", f"{o.diameter_um:.2f}", o.cluster_id,
            int(o.cut_by_border), int(o.in_edge_zone), int(o.reviewer_assigned),
        ]
        if confounded:
            row += [o.context, int(o.defocused), int(o.dense), f"{o.her2_nonspecific:.2f}"]
        writer.writerow(row)
    write_text_atomic(truth / "objects.csv", table.getvalue())
    kinds = KINDS if confounded else tuple(k for k in KINDS if k not in CONFOUNDER_KINDS)
    counts = {kind: sum(o.kind == kind for o in objects) for kind in kinds}
    for level in range(4):
        counts[f"her2_{level}"] = sum(o.kind == "ctc" and o.her2_level == level for o in objects)
    if confounded:
        for context in CONTEXTS:
            counts[context] = sum(o.context == context for o in objects)
    missed = [o for o in objects if o.kind == "ctc" and not o.reviewer_assigned]
    added = [o for o in objects if o.kind != "ctc" and o.reviewer_assigned]
    parameters = asdict(spec)
    if not confounded:  # the file stays as it was before the confounder model
        del parameters["confounders"]
    if not spec.scan_from_bottom:  # only a 140-frame CellTracks XP cartridge records it
        del parameters["scan_from_bottom"]
    meta = {
        "cartridge_id": spec.cartridge_id,
        "seed": spec.seed,
        "parameters": {
            **{k: v for k, v in parameters.items() if k not in ("cartridge_id", "seed")},
            "bits": bits, "encoding": encoding, "compression": compression,
            "her2_level_signal": HER2_LEVEL_SIGNAL, "her2_log_spread": HER2_LOG_SPREAD,
        },
        "counts": counts,
        "reviewer_assigned_ctc": sum(o.reviewer_assigned for o in objects),
        "reviewer_noise": [
            {"object_id": o.object_id, "frame": o.frame, "kind": o.kind,
             "error": "missed_ctc" if o.kind == "ctc" else "false_ctc"}
            for o in (*missed, *added)
        ] if reviewer == "default" else [],
    }
    if confounded:
        conf = _confounder_plan(spec)
        meta.update(sample_conditions(spec))
        meta["defocused_frames"] = sorted(conf.defocused)
        meta["dense_frames"] = sorted(conf.dense)
    if reviewer != "default":  # the default's record stays as it was
        meta["reviewer"] = {"name": reviewer, "definition": REVIEWERS[reviewer],
                            "presented_kinds": list(PRESENTED_KINDS)}
    write_json_atomic(truth / "cartridge.json", meta)
    return counts
