"""The CTC gate on hand-made feature rows."""

from __future__ import annotations

import numpy as np

from ctcimg.gate import REJECT_REASONS, GateParams, gate


def _events(**overrides) -> dict[str, np.ndarray]:
    """Three events; by default all three are CTC-like (measured values of simulated CTCs)."""
    base = {
        "diameter_um": 12.4, "cd45_mean": 12.0, "cd45_ring": 4.0, "ck_area_um2": 121.0,
        "ck_mean": 300.0, "dapi_area_um2": 34.0, "nucleus_in_ck_fraction": 1.0,
        "ck_covered_by_nucleus_fraction": 0.28, "circularity": 0.95, "aspect_ratio": 1.2,
        "nucleus_offset_um": 0.4, "cd45_around_nucleus": 3.0,
    }
    columns = {k: np.full(3, v, float) for k, v in base.items()}
    for name, values in overrides.items():
        columns[name] = np.asarray(values, float)
    return columns


def _reasons(features: dict, **params: float) -> list[str]:
    """The gate's reject reasons for ``features`` under the default thresholds but
    ``params``."""
    return list(gate(features, GateParams(**params))[1])


def test_ctc_like_events_pass():
    is_ctc, reason = gate(_events())
    assert is_ctc.all()
    assert list(reason) == ["", "", ""]


def test_nucleus_mostly_outside_the_ck_is_rejected():
    is_ctc, reason = gate(_events(nucleus_in_ck_fraction=[0.45, 0.5, 0.2],
                                  ck_covered_by_nucleus_fraction=[0.08, 0.1, 0.05]))
    assert list(is_ctc) == [False, True, False]
    assert list(reason) == ["nucleus_outside", "", "nucleus_outside"]


def test_nucleus_cut_off_by_the_frame_border_is_rejected():
    # A CK+ cell beside a nucleus that lies beyond the frame border (dev seed 42, frame 4):
    # only a 1-2 px DAPI strip along the border is in the frame, all of it inside the CK,
    # so nucleus_in_ck_fraction is 1 although the nucleus is outside the cell.
    features = _events(dapi_area_um2=[5.73, 5.73, 34.0], ck_area_um2=[166.7, 166.7, 121.0],
                       ck_covered_by_nucleus_fraction=[0.034, 0.034, 0.163])
    is_ctc, reason = gate(features)
    assert list(reason) == ["nucleus_outside", "nucleus_outside", ""]
    # the check can be switched off
    is_ctc, _ = gate(features, GateParams(min_ck_covered_by_nucleus=0.0))
    assert is_ctc.all()


def test_nucleus_centred_at_the_cell_rim_is_rejected():
    # A nucleus beside a CK+ cell: blur widens the CK area over it, so more than half of the
    # measured nucleus lies in the CK, but its centre is at the cell's rim. CK radius here:
    # sqrt(48.7 / pi) = 3.94 um; limit 0.7 radii = 2.76 um.
    features = _events(ck_area_um2=48.7, dapi_area_um2=11.9, nucleus_in_ck_fraction=0.55,
                       ck_covered_by_nucleus_fraction=0.13,
                       nucleus_offset_um=[3.6, 2.7, 0.4])
    is_ctc, reason = gate(features)
    assert list(reason) == ["nucleus_outside", "", ""]
    is_ctc, _ = gate(features, GateParams(max_nucleus_offset=float("inf")))
    assert is_ctc.all()


def test_reasons_follow_the_documented_order():
    # fails both the nucleus and the CD45 criterion: the earlier one (nucleus) is reported
    _, reason = gate(_events(ck_covered_by_nucleus_fraction=[0.02, 0.3, 0.3],
                             cd45_mean=[200.0, 200.0, 12.0]))
    assert list(reason) == ["nucleus_outside", "cd45_positive", ""]
    assert set(reason) - {""} <= set(REJECT_REASONS)


def test_params_round_trip_and_old_records_load():
    params = GateParams(min_ck_covered_by_nucleus=0.05)
    assert GateParams.from_dict(params.to_dict()) == params
    old = GateParams().to_dict()
    del old["min_ck_covered_by_nucleus"]  # recorded before these parameters existed
    del old["max_nucleus_offset"]
    assert GateParams.from_dict(old) == GateParams()


def test_cd45_membrane_around_the_nucleus_rejects_a_ck_dim_leukocyte():
    # a CK-dim leukocyte whose event is its nucleus: the CD45 membrane lies outside the
    # event, under the ring (mean 544, ring 545), but around the nucleus
    features = _events(cd45_mean=544.0, cd45_ring=545.0, ck_mean=48.0,
                       cd45_around_nucleus=[310.0, 3.0, float("nan")])
    is_ctc, reason = gate(features)
    assert list(reason) == ["cd45_positive", "", ""]
    is_ctc, _ = gate(features, GateParams(max_cd45_around_nucleus=float("inf")))
    assert is_ctc.all()


def test_cd45_blurred_in_from_a_leukocyte_cluster_is_not_charged_to_the_ctc():
    # a CTC packed among leukocytes: CD45 in its annulus (30) is a tenth of what the ring
    # on the leukocytes reads (250), a leukocyte's own membrane reads as much as the ring
    features = _events(cd45_mean=45.0, cd45_ring=[250.0, 100.0, 250.0],
                       cd45_around_nucleus=[30.0, 60.0, 30.0])
    assert _reasons(features) == ["", "cd45_positive", ""]
    assert _reasons(features, min_cd45_own_fraction=0.0) == ["cd45_positive"] * 3


def test_an_empty_cd45_ring_still_rejects_a_cd45_bright_event():
    # an autofluorescent particle walled in by other events: no ring pixels (NaN)
    features = _events(cd45_mean=815.0, cd45_ring=float("nan"), cd45_around_nucleus=154.0)
    _, reason = gate(features)
    assert set(reason) == {"cd45_positive"}



def test_a_walled_in_event_reads_the_membranes_around_it_as_its_ring():
    # an out-of-focus CTC walled in by the leukocytes of its cluster (no ring pixels, NaN):
    # its CD45 (150) and annulus (119) are their blur, a fifth of their membranes (539); a
    # CK-dim leukocyte walled in among others reads its own membrane, as bright as theirs;
    # an autofluorescent particle walled in by nothing measurable stays CD45+
    features = _events(cd45_mean=[150.0, 380.0, 815.0], cd45_ring=float("nan"),
                       cd45_around_nucleus=[119.0, 300.0, 154.0],
                       ck_around_nucleus=[177.0, 40.0, 210.0],
                       cd45_neighbours=[539.0, 600.0, float("nan")])
    assert _reasons(features) == ["", "cd45_positive", "cd45_positive"]
    del features["cd45_neighbours"]  # an events table from before the column: background
    assert _reasons(features) == ["cd45_positive"] * 3

def test_a_stuck_leukocytes_membrane_in_the_event_is_not_charged_to_a_clean_ctc():
    # CD45 excess over the event of 70 with a clean annulus: part of a stuck leukocyte's
    # membrane; 200 is a CD45+ cell's worth, whatever the annulus reads
    features = _events(cd45_mean=[74.0, 204.0, 74.0], cd45_ring=4.0,
                       cd45_around_nucleus=[3.0, 3.0, 40.0])
    assert _reasons(features) == ["", "cd45_positive", "cd45_positive"]


def test_annulus_cd45_deep_in_bright_ck_is_foreign():
    # annulus CD45 60 under CK 650 (a CTC's cytoplasm, leukocytes around) vs CK 150 (a
    # CK-dim leukocyte's membrane), ring 200; and a CK+CD45+ double reading above its ring
    features = _events(cd45_mean=70.0, cd45_ring=[200.0, 200.0, 20.0],
                       cd45_around_nucleus=[60.0, 60.0, 300.0],
                       ck_around_nucleus=[650.0, 150.0, 2500.0])
    assert _reasons(features) == ["", "cd45_positive", "cd45_positive"]
    assert _reasons(features, max_cd45_to_ck_around_nucleus=0.0) == ["cd45_positive"] * 3


def test_annulus_cd45_far_below_the_neighbours_membranes_is_foreign():
    # annulus CD45 100, ring 90 (above it: no rule of the ring applies), CK 400: beside
    # leukocyte membranes of 500 it is their spill; beside 200 (a leukocyte among
    # leukocytes) its own; beside 500 but over CK 250 (0.4 of it: a CK-dim leukocyte
    # stuck to a CTC) its own too
    features = _events(cd45_mean=150.0, cd45_ring=90.0, cd45_around_nucleus=100.0,
                       cd45_neighbours=[500.0, 200.0, 500.0],
                       ck_around_nucleus=[400.0, 400.0, 250.0])
    assert _reasons(features) == ["", "cd45_positive", "cd45_positive"]
    # the CK condition is max_cd45_to_ck_beside_neighbours (0.3): at 0.5 the third is spill
    assert _reasons(features, max_cd45_to_ck_beside_neighbours=0.5) == ["", "cd45_positive", ""]
    assert _reasons(features, max_cd45_to_neighbours=0.0) == ["cd45_positive"] * 3
    # no neighbour (NaN) or an events table without the column: not foreign
    assert _reasons(_events(**{**features, "cd45_neighbours": np.full(3, np.nan)})) == \
        ["cd45_positive"] * 3
    del features["cd45_neighbours"]
    assert _reasons(features) == ["cd45_positive"] * 3


def test_annulus_cd45_below_the_ring_over_bright_ck_among_neighbours_is_foreign():
    # annulus CD45 200 below its ring (300), touching cells (neighbours 500): over CK 400
    # (0.5 of it, a CTC pressed among leukocytes) blurred in; over CK 200 (1.0, a CK-dim
    # leukocyte among others) its own; over CK 400 without neighbours, the isolated
    # cell's stricter fraction (0.15) applies: its own
    features = _events(cd45_mean=150.0, cd45_ring=300.0, cd45_around_nucleus=200.0,
                       cd45_neighbours=[500.0, 500.0, np.nan],
                       ck_around_nucleus=[400.0, 200.0, 400.0])
    assert _reasons(features) == ["", "cd45_positive", "cd45_positive"]
    assert _reasons(features, max_cd45_to_ck_among_neighbours=0.0) == ["cd45_positive"] * 3
    assert _reasons(features, max_cd45_to_ck_among_neighbours=1.1) == ["", "", "cd45_positive"]


def test_annulus_cd45_must_read_clearly_below_the_ring_to_count_as_blurred_in():
    # isolated events over bright CK (1000: annulus 0.1 of it): an annulus reading as much
    # as the ring beyond the event (100 vs 102: one membrane straddling the event's border,
    # a CD45-dim leukocyte) is the event's own; one at 0.67 of the ring is blurred in; one
    # above the ring is the event's own whatever the fraction
    features = _events(cd45_mean=120.0, cd45_ring=[102.0, 150.0, 60.0],
                       cd45_around_nucleus=100.0, cd45_neighbours=np.nan,
                       ck_around_nucleus=1000.0)
    assert _reasons(features) == ["cd45_positive", "", "cd45_positive"]
    assert _reasons(features, max_cd45_to_ring_in_cytoplasm=1.0) == ["", "", "cd45_positive"]
    assert _reasons(features, max_cd45_to_ring_in_cytoplasm=0.6) == ["cd45_positive"] * 3


def test_a_large_cd45_excess_is_never_charged_to_neighbours():
    # an autofluorescent particle: CD45 400 above its ring (266) with a low annulus (64,
    # below a quarter of the ring) is its own, while the same annulus with an excess of
    # 80 (a CTC among leukocytes) is blurred in
    features = _events(cd45_mean=[666.0, 346.0, 346.0], cd45_ring=[266.0, 266.0, 266.0],
                       cd45_around_nucleus=64.0)
    assert _reasons(features) == ["cd45_positive", "", ""]
