"""The CTC gate: candidate events → CTC or not, with the first failing criterion.

CellSearch's CTC definition: CK+, DAPI+ with the nucleus at least half inside the
CK-stained cytoplasm, CD45−, diameter ≥ 4 µm, round to oval. The nucleus criterion is
checked three ways: the in-CK part must be at least half of the measured nucleus, it
must cover a minimum share of the CK area, since the measured nucleus can be only a
sliver of the real one (a nucleus cut off by the frame border), and the nucleus centre
must lie well inside the CK area, since blur widens the CK area over a nucleus that
sits beside the cell (measured overlap above half, nucleus centre at the cell's rim).
Every criterion is one threshold in :class:`GateParams`; an event that fails gets the
reason of the first criterion it fails, in the order of :data:`REJECT_REASONS`.
With a learned model (:mod:`ctcimg.learn`) only the :data:`HARD_RULES` apply and the
model decides the rest (reason ``classifier``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np

from ctcimg.errors import InputError

#: Reject reasons in the order the gate checks them, with what each means.
REJECT_REASONS: dict[str, str] = {
    "cartridge_edge": "centroid on the bright cartridge-edge band (see ctcimg.edge)",
    "too_large": "equivalent diameter above max_diameter_um (cartridge edge, debris sheet)",
    "ck_negative": "too little cytokeratin: CK+ area or CK mean below threshold",
    "no_nucleus": "no DAPI-stained nucleus in the event",
    "classifier": "the lab's learned CTC model (--gate-model, see ctcimg.learn) scored it "
                  "below its threshold",
    "too_small": "equivalent diameter below min_diameter_um (CellSearch: 4 µm), or, in a "
                 "frame more out of focus than defocus_blur_px2, a blur-corrected CK extent "
                 "below min_ck_extent_um (see ctcimg.focus)",
    "nucleus_outside": "less than min_nucleus_in_ck of the nucleus lies inside the CK area, "
                       "the nucleus inside covers less than min_ck_covered_by_nucleus of it, "
                       "or the nucleus centre is more than max_nucleus_offset CK radii from "
                       "the CK centre",
    "cd45_positive": "CD45 (leukocyte marker) above threshold over the event, or around its "
                     "nucleus (a leukocyte's membrane, outside a CK-dim leukocyte's event), "
                     "unless it is evidently not the event's own (see GateParams)",
    "not_round": "circularity below min_circularity or aspect ratio above max_aspect_ratio",
}
#: Reasons that need no judgement: checked before a learned model (ctcimg.learn) decides.
HARD_RULES: tuple[str, ...] = ("cartridge_edge", "too_large", "ck_negative", "no_nucleus")


@dataclass(frozen=True)
class GateParams:
    """Thresholds of the CTC gate (intensities: 12-bit units above background).

    Attributes
    ----------
    min_ck_area_um2
        Smallest CK+ area of a CTC (µm²).
    min_ck_mean
        Smallest background-corrected CK mean over the event.
    min_dapi_area_um2
        Smallest DAPI+ area counted as a nucleus (µm²).
    min_diameter_um, max_diameter_um
        Allowed equivalent diameter of the event (µm). CellSearch counts intact cells of
        at least 4 µm; the point-spread function makes a sub-4 µm particle measure up to
        ~5.6 µm (simulated optics), so the default is 6 µm. The smallest CTCs (7 µm)
        measure ≥ 7 µm.
    defocus_blur_px2, min_ck_extent_um
        In a frame whose blur (``frame_blur_px2``, :mod:`ctcimg.focus`) exceeds
        ``defocus_blur_px2`` the diameter measures the blur as much as the cell: there
        an event must also have a blur-corrected CK extent (``ck_extent_um``) of at least
        ``min_ck_extent_um``. On development confounder cohorts (seeds 1001-1005, 40
        patients) in-focus frames measure a blur of −3.2 to 6.0 px² (the highest in
        leukocyte carpets), out-of-focus ones 6.9 to 33; in out-of-focus frames specks
        (true size ≤ 3.6 µm) measure an extent of at most 7.0 µm, CTCs at least 8.6 µm
        (in focus: CTCs ≥ 7.2 µm, so the check is not applied there, where the diameter
        already rejects specks). ``inf`` disables it.
    min_nucleus_in_ck
        Fraction of the nucleus that must lie inside the CK area (CellSearch: half).
    min_ck_covered_by_nucleus
        Smallest fraction of the CK area covered by DAPI+ pixels
        (``ck_covered_by_nucleus_fraction``). Half a nucleus (CellSearch) of a cell whose
        nucleus takes ≥ 20 % of its area covers ≥ 10 % of the CK area. Below that the
        measured nucleus is a sliver, and ``nucleus_in_ck_fraction`` says nothing about
        the real one: a CK+ cell beside a nucleus that lies mostly beyond the frame
        border shows only a 1–2 px DAPI strip at the border, inside the CK, so it
        measures 100 % inside. Such events cover 2–4 % of the CK; CTCs ≥ 16 %.
        0 disables the check.
    max_nucleus_offset
        Largest distance from the centroid of the CK+ area to that of the nucleus
        (``nucleus_offset_um``), in units of the CK area's equivalent radius
        (√(ck_area/π)). A nucleus half inside a round cell has its centre near the rim
        (1 radius); blur widens the CK area over a nucleus beside the cell, so such a
        nucleus can measure more than half inside while its centre stays at ≥ 0.97
        radii. Simulated CTCs, cut ones included, measure ≤ 0.43; the default is the
        middle of that gap. ``inf`` disables the check.
    max_cd45_mean
        Largest CD45 mean over the event minus its local ring background.
    max_cd45_around_nucleus
        Largest lower-quartile CD45 in the annulus around the nucleus
        (``cd45_around_nucleus``).
        A leukocyte's CD45 sits on its membrane, 1–2.5 µm from its nucleus; when the
        leukocyte shows dim nonspecific CK its event can be little more than the
        nucleus, the membrane lies outside the event and the ring background sits on
        it, so the event mean minus ring reads ≈ 0. A CTC's nucleus is wrapped in
        cytoplasm: its annulus reads background even with leukocytes stuck to it (CD45
        blurred in from those is told apart by the rules below). On development
        confounder cohorts (seeds 1001-1008, 2531 CTCs without leukocytes stuck to them)
        CTCs measure at most 4.3 (99.9 % ≤ 2.8), in and out of focus; the dimmest
        CD45-dim leukocytes with CK+ pixels 5.3, 8.8, 9.2, 9.5 and then ≥ 12.4, CK-dim
        ones ≥ 18. 6 rejects three of those four and loses no CTC on those seeds (12, the
        earlier default, let all four through).
    min_cd45_own_fraction
        The annulus CD45 counts as the event's own membrane only when it is at least this
        fraction of the CD45 ring beyond the event (``cd45_ring``). A CTC inside a
        leukocyte cluster reads CD45 in its annulus too, blurred in from the leukocytes
        packed around it, but far less than on those leukocytes (development seeds
        1001-1002: 0.06-0.39 of the ring, 14 CTCs), while a leukocyte's membrane is its
        own brightest CD45 (CK-dim leukocytes ≥ 0.30, CD45-dim ones ≥ 0.57; 256 events).
        0 charges every annulus CD45 to the event, as before.
    max_cd45_to_ck_around_nucleus
        Nor does it count when the annulus lies in bright CK — its CD45 below this
        fraction of its CK (``ck_around_nucleus``, the same lower quartile) — and reads
        less than the ring: a CTC's cytoplasm with leukocytes stuck around it. On
        development seeds 1001, 1002 and 1004 CTCs rejected for their annulus CD45 read
        0.01-0.28 of their CK (most ≤ 0.15), CK-dim leukocytes ≥ 0.26, CD45-dim ones ≥ 0.22;
        CK+CD45+ doubles (0.07-0.4) read 20-90 × their ring. 0 disables it.
    max_cd45_to_ck_among_neighbours
        The same rule, with this larger fraction of its CK, for an event that touches other
        cells (``cd45_neighbours`` measured): a CTC pressed among leukocytes reads their
        blurred membranes in its annulus, brighter beyond the event than in it, over its
        own bright CK. On development seeds 1005-1008 the CTCs in leukocyte clusters that
        the rules above rejected read 0.18-0.81 of their CK (in and out of focus), while
        every leukocyte touching other cells whose annulus reads below its ring, stuck to
        a CTC or not, read ≥ 0.91 (a CK-dim leukocyte's CK is dim where its membrane is;
        isolated CD45-dim leukocytes read down to 0.16, hence the neighbours condition).
        0 disables it.
    max_cd45_to_ring_in_cytoplasm
        How far below the ring the annulus must read for the two rules above: "below the
        ring" means below this fraction of it. An event whose annulus and ring lie on the
        same membrane (a CD45-dim leukocyte whose membrane straddles its event's border)
        reads them alike, while CD45 blurred into a CTC's cytoplasm from outside reads
        clearly less than at its source. On development seeds 1005-1008 the CTCs only these
        rules let through read at most 0.82 of their ring, the leukocytes they let through
        0.95-1.00 (two CD45-dim ones, one CK-dim one stuck to a CTC); 0.9 rejects those
        three and loses no CTC, 0.8 loses two. 1 is the rule as it was before.
    max_cd45_to_neighbours, max_cd45_to_ck_beside_neighbours
        Nor does it count when it is below ``max_cd45_to_neighbours`` of the membrane CD45
        of the cells touching the event (``cd45_neighbours``) and below
        ``max_cd45_to_ck_beside_neighbours`` of its CK: blur spilled from leukocytes packed
        around a CTC is a fraction of what their own membranes read, while a leukocyte's
        membrane reads about as bright as its neighbours' (development seeds 1001-1005:
        CTCs in leukocyte clusters 0.02 median, 95th percentile 0.3; CK-dim leukocytes
        ≥ 0.31 unless stuck to a CTC, where CD45 ≥ half their CK keeps all but one of 141
        rejected; seeds 1001-1008: 0.35 finds 2 more of 131 such CTCs than 0.3 and lets no
        more leukocytes through). 0 disables it. The CK condition is 0.3 since seeds
        1005-1008 (0.5 before): of the events only this rule let through, the CTCs read at
        most 0.20 of their CK, the CK-dim and CD45-dim leukocytes 0.34-0.50 (5 false CTCs);
        at 0.3 those are rejected and no CTC is lost (at 0.2 one is).
    min_circularity, max_aspect_ratio
        Shape limits: round to oval.
    """

    min_ck_area_um2: float = 12.0
    min_ck_mean: float = 40.0
    min_dapi_area_um2: float = 3.0
    min_diameter_um: float = 6.0
    max_diameter_um: float = 40.0
    defocus_blur_px2: float = 6.5
    min_ck_extent_um: float = 7.8
    min_nucleus_in_ck: float = 0.5
    min_ck_covered_by_nucleus: float = 0.1
    max_nucleus_offset: float = 0.7
    max_cd45_mean: float = 40.0
    max_cd45_around_nucleus: float = 6.0
    min_cd45_own_fraction: float = 0.25
    max_cd45_to_ck_around_nucleus: float = 0.15
    max_cd45_to_ck_among_neighbours: float = 0.75
    max_cd45_to_ring_in_cytoplasm: float = 0.9
    max_cd45_to_neighbours: float = 0.35
    max_cd45_to_ck_beside_neighbours: float = 0.3
    min_circularity: float = 0.45
    max_aspect_ratio: float = 2.5

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not value >= 0:  # NaN too: a NaN threshold would silently disable its check
                raise InputError(f"{name} must be a number >= 0, not {value}")
        for name in ("min_nucleus_in_ck", "min_ck_covered_by_nucleus", "min_circularity"):
            if getattr(self, name) > 1:
                raise InputError(f"{name} is a fraction: it must be within [0, 1], "
                                 f"not {getattr(self, name)}")
        if self.min_diameter_um > self.max_diameter_um:
            raise InputError(f"min_diameter_um ({self.min_diameter_um}) must not exceed "
                             f"max_diameter_um ({self.max_diameter_um})")
        if self.max_aspect_ratio < 1:
            raise InputError(f"max_aspect_ratio must be >= 1 (a disc's), not "
                             f"{self.max_aspect_ratio}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping) -> GateParams:
        """Thresholds from a mapping; missing ones keep their defaults (older records)."""
        unknown = sorted(set(values) - set(asdict(cls())))
        if unknown:
            raise InputError(f"unknown gate parameter(s) {', '.join(unknown)}")
        return cls(**{k: float(v) for k, v in values.items()})


def _blurred_and_small(features: Mapping[str, np.ndarray], params: GateParams) -> np.ndarray:
    """In out-of-focus frames, a blur-corrected CK extent below the limit (False where the
    focus features are absent, as in events tables written before they existed)."""
    n = len(features["diameter_um"])
    if "frame_blur_px2" not in features or "ck_extent_um" not in features:
        return np.zeros(n, bool)
    blur = np.asarray(features["frame_blur_px2"], float)
    extent = np.asarray(features["ck_extent_um"], float)
    return (blur > params.defocus_blur_px2) & (extent < params.min_ck_extent_um)


def _foreign_cd45(features: Mapping[str, np.ndarray], annulus: np.ndarray, ring: np.ndarray,
                  excess: np.ndarray, params: GateParams) -> np.ndarray:
    """The event's CD45 is not its own membrane's. Never when the event's excess CD45 is
    more than modest (> 3 × max_cd45_mean: a CD45+ object's own, e.g. an autofluorescent
    particle bright in every channel, whatever its annulus reads; part of a stuck
    leukocyte's membrane stays below). Otherwise when the annulus around its nucleus is
    clean, or its CD45 is far below the ring beyond the event (blurred in from leukocytes
    packed around it), or deep in bright CK (CK at least 1 / max_cd45_to_ck_around_nucleus
    times the CD45, a CTC's cytoplasm; 1 / max_cd45_to_ck_among_neighbours times when the
    event touches other cells) and clearly below the ring, or far below the membranes of
    the cells touching the event and well below its CK (development seeds 1001-1008: of the
    CTCs called, one has an excess above 80, at 83; one autofluorescent particle at 400)."""
    modest = excess <= 3 * params.max_cd45_mean
    clean = annulus <= params.max_cd45_around_nucleus
    far_below_ring = annulus < params.min_cd45_own_fraction * ring
    # columns absent from events tables written before they existed read NaN: no such rule
    unmeasured = np.full(annulus.shape, np.nan)
    ck = np.asarray(features.get("ck_around_nucleus", unmeasured), float)
    neighbours = np.asarray(features.get("cd45_neighbours", unmeasured), float)
    with np.errstate(invalid="ignore"):
        to_ck = np.where(np.isnan(neighbours), params.max_cd45_to_ck_around_nucleus,
                         max(params.max_cd45_to_ck_around_nucleus,
                             params.max_cd45_to_ck_among_neighbours))
        in_cytoplasm = ((annulus < to_ck * ck)
                        & (annulus < params.max_cd45_to_ring_in_cytoplasm * ring))
        beside_neighbours = ((annulus < params.max_cd45_to_neighbours * neighbours)
                             & (annulus < params.max_cd45_to_ck_beside_neighbours * ck))
    return modest & (clean | far_below_ring | in_cytoplasm | beside_neighbours)


def gate(features: Mapping[str, np.ndarray], params: GateParams = GateParams()
         ) -> tuple[np.ndarray, np.ndarray]:
    """Decide which events are CTCs.

    Parameters
    ----------
    features
        Column arrays from :func:`ctcimg.segment.segment_frame` (or an events DataFrame).
    params
        Gate thresholds.

    Returns
    -------
    is_ctc : ndarray of bool
    reject_reason : ndarray of str
        Empty string for CTCs, else the first failing criterion (a key of REJECT_REASONS).
    """
    diameter = np.asarray(features["diameter_um"], float)
    # an empty ring (an event walled in by others) reads as what walls it in, the membranes
    # of the cells touching it (cd45_neighbours), or as background without those; a NaN
    # would silently pass both CD45 checks
    cd45_ring = np.asarray(features["cd45_ring"], float)
    if "cd45_neighbours" in features:
        cd45_ring = np.where(np.isnan(cd45_ring),
                             np.asarray(features["cd45_neighbours"], float), cd45_ring)
    cd45_ring = np.nan_to_num(cd45_ring, nan=0.0)
    cd45 = np.asarray(features["cd45_mean"], float) - cd45_ring
    annulus = np.asarray(features["cd45_around_nucleus"], float)
    ck_radius = np.sqrt(np.asarray(features["ck_area_um2"], float) / np.pi)
    on_edge = features["in_cartridge_edge"] if "in_cartridge_edge" in features else \
        np.zeros(diameter.shape, bool)
    failures = {
        "cartridge_edge": np.asarray(on_edge, bool),
        "too_large": diameter > params.max_diameter_um,
        "ck_negative": (np.asarray(features["ck_area_um2"], float) < params.min_ck_area_um2)
        | (np.asarray(features["ck_mean"], float) < params.min_ck_mean),
        "no_nucleus": np.asarray(features["dapi_area_um2"], float) < params.min_dapi_area_um2,
        "too_small": (diameter < params.min_diameter_um) | _blurred_and_small(features, params),
        "nucleus_outside": (np.asarray(features["nucleus_in_ck_fraction"], float)
                            < params.min_nucleus_in_ck)
        | (np.asarray(features["ck_covered_by_nucleus_fraction"], float)
           < params.min_ck_covered_by_nucleus)
        | (np.asarray(features["nucleus_offset_um"], float)
           > params.max_nucleus_offset * ck_radius),
        "cd45_positive": ((cd45 > params.max_cd45_mean)
                          | (annulus > params.max_cd45_around_nucleus))
        & ~_foreign_cd45(features, annulus, cd45_ring, cd45, params),
        "not_round": (np.asarray(features["circularity"], float) < params.min_circularity)
        | (np.asarray(features["aspect_ratio"], float) > params.max_aspect_ratio),
    }
    reason = np.select(list(failures.values()), list(failures), default="")
    return reason == "", reason.astype(object)
