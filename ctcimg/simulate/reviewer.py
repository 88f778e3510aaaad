"""The simulated lab's reviewer: what the instrument presents, and what the operator confirms.

CellSearch presents its operator the DAPI+ CK+ candidates (:func:`_presented`); the export
lists them as events, ``assigned`` when the operator confirmed a CTC. "default" is
CellSearch's definition with random reviewer errors (drawn in :mod:`ctcimg.simulate.plan`);
the other named definitions (:data:`REVIEWERS`) model labs that apply the CTC definition
differently (DESIGN.md §5: ~92 % agreement on CTC-or-not between readers in ring
studies), without random errors.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from ctcimg.channels import PIXEL_SIZE_UM

if TYPE_CHECKING:
    from ctcimg.simulate.bodies import _Body
    from ctcimg.simulate.truth import SimulatedObject


#: Named reviewer definitions: which candidates a simulated lab's operator confirms as CTCs
#: (``simulate_cartridge(reviewer=...)``). "default" lists the true CTCs and the CTC-like
#: decoys in the XML, with random reviewer errors (about 5 % of CTCs missed, 1 in 20 of the
#: decoys called a CTC). Every other definition is applied without random errors to every
#: candidate the instrument would present (:data:`PRESENTED_KINDS`), so agreement with it
#: measures how well a learned gate (ctcimg.learn) picks up the lab's rule; none of them
#: counts a cell touching the bright cartridge-edge band, where no cell can be judged
#: (ctcimg's hard rule cartridge_edge).
REVIEWERS: dict[str, str] = {
    "default": "CellSearch's definition, with random reviewer errors",
    "no_small": "true CTCs of at least 9 um diameter (the lab does not count smaller ones)",
    "partial_nucleus": "true CTCs, and CK+ cells whose nucleus lies only partly inside the "
                       "cytokeratin (nucleus_outside)",
    "ck_dim": "true CTCs whose cytokeratin is not dim: CK stain amplitude at least 400 on the "
              "12-bit scale (the dimmest ~13 % of simulated CTCs are not counted)",
}
#: Object kinds the instrument presents to the operator: CK+ objects with a nucleus.
PRESENTED_KINDS: tuple[str, ...] = ("ctc", "ck_cd45_double", "nucleus_outside", "speck")
_CK_DIM_AMPLITUDE = 400.0


def _reviewer_confirms(reviewer: str, obj: SimulatedObject) -> bool:
    """Whether a presented object is a CTC under the named (non-default) reviewer definition."""
    if obj.beyond_edge_band_px <= obj.diameter_um / 2 / PIXEL_SIZE_UM:  # touches the band
        return False
    if reviewer == "no_small":
        return obj.kind == "ctc" and obj.diameter_um >= 9.0
    if reviewer == "partial_nucleus":
        return obj.kind in ("ctc", "nucleus_outside")
    if reviewer == "ck_dim":
        return obj.kind == "ctc" and obj.ck_amplitude >= _CK_DIM_AMPLITUDE
    raise ValueError(f"unknown reviewer {reviewer!r}; known: {', '.join(REVIEWERS)}")


def _presented(body: _Body) -> bool:
    """Whether CellSearch shows a drawn body to its reviewer as a DAPI+ CK+ candidate (an
    event in the XML). A stuck leukocyte shows within its CTC's event, a CD45-dim leukocyte
    only with nonspecific CK."""
    presented = body.reviewer_assigned or body.kind in (
        "ctc", "ck_cd45_double", "nucleus_outside", "ck_dim_leukocyte", "autofluorescent",
    ) or (body.kind == "cd45_dim_leukocyte" and body.ck > 20)
    return bool(presented and body.context != "stuck")


def _review(objects: list[SimulatedObject],
            reviewer: str) -> tuple[list[SimulatedObject], list[SimulatedObject]]:
    """The objects with the named reviewer's calls, and the candidates the export lists as
    events: under "default" the presented ones; under any other definition also every
    object of :data:`PRESENTED_KINDS` (a stuck leukocyte never)."""
    if reviewer == "default":
        return objects, [o for o in objects if o.presented]
    objects = [replace(o, reviewer_assigned=_reviewer_confirms(reviewer, o)) for o in objects]
    return objects, [o for o in objects if o.presented
                     or (o.kind in PRESENTED_KINDS and o.context != "stuck")]
