"""Tests of the synthetic cartridge simulator: layout, determinism, truth, optics, cohort."""

from __future__ import annotations

import csv
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from ctcimg.channels import CELLSEARCH_PAGE_ORDER, CHANNELS, grid_position
from ctcimg.io.tiff import read_headers, read_pages, restore_page
from ctcimg.simulate import (
    CONFOUNDER_KINDS,
    HER2_LEVEL_SIGNAL,
    KINDS,
    default_grid,
    render_frame,
    simulate_cartridge,
    simulate_cohort,
)

SHAPE = (300, 400)  # small frames keep the tests fast


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    return simulate_cartridge(out, n_frames=6, n_ctc=24, seed=11, frame_shape=SHAPE,
                              leukocytes_per_frame=(300, 400))


def _objects(sim):
    with open(sim.truth / "objects.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _restored(path: Path) -> np.ndarray:
    """Frame file → float32 (4, H, W) in canonical channel order, via the TIFF codec."""
    headers = read_headers(path)
    pages = read_pages(path, tuple(range(len(headers))))
    out = np.empty((4, *headers[0].shape), np.float32)
    for name, page, header in zip(CELLSEARCH_PAGE_ORDER, pages, headers, strict=True):
        out[CHANNELS.index(name)] = restore_page(page, header)
    return out


def _frame_file(sim, frame: int) -> Path:
    return sim.path / "processed" / f"{sim.id}_{frame:03d}.tif"


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path):
    kw = dict(n_frames=2, n_ctc=3, frame_shape=(160, 200), leukocytes_per_frame=(100, 200))
    a = simulate_cartridge(tmp_path / "a", seed=5, **kw)
    b = simulate_cartridge(tmp_path / "b", seed=5, **kw)
    c = simulate_cartridge(tmp_path / "c", "SIM000005.1.1", seed=6, **kw)
    files = sorted(p.relative_to(a.path) for p in a.path.rglob("*") if p.is_file())
    assert len(files) == 3  # XML + 2 frames
    for rel in files:
        assert (a.path / rel).read_bytes() == (b.path / rel).read_bytes(), rel
    assert (a.truth / "objects.csv").read_bytes() == (b.truth / "objects.csv").read_bytes()
    assert _frame_file(a, 1).read_bytes() != _frame_file(c, 1).read_bytes()


def test_layout_xml_and_tiff_pages(sim):
    assert sim.id == "SIM000011.1.1"
    assert sim.path.name == sim.id and sim.path.parent.name != "truth"
    tifs = sorted(p.name for p in (sim.path / "processed").iterdir())
    assert tifs == [f"SIM000011.1.1_{n:03d}.tif" for n in range(1, 7)]
    root = ET.parse(sim.path / "SIM000011.xml").getroot()
    assert root.tag == "archive"
    run = root.find("runs/record")
    assert (int(run.findtext("numrows")), int(run.findtext("numcols"))) == (2, 3)
    assert (int(run.findtext("camxsize")), int(run.findtext("camysize"))) == (400, 300)
    names = [r.findtext("filtername") for r in root.findall("test_filters/record")]
    assert names == ["DAPI", "FITC", "PE", "APC"]

    import tifffile

    with tifffile.TiffFile(_frame_file(sim, 4)) as tif:
        assert len(tif.pages) == 4
        for page in tif.pages:
            assert page.shape == SHAPE and page.dtype == np.uint16
            for tag in (754, 755, 756):
                assert tag in page.tags


def test_reviewer_events_map_to_truth(sim):
    objects = _objects(sim)
    root = ET.parse(sim.path / "SIM000011.xml").getroot()
    events = root.findall("events/record")
    assigned = [e for e in events if e.findtext("assigned") == "true"]
    assert len(assigned) == sum(o["reviewer_assigned"] == "1" for o in objects)
    meta = json.loads((sim.truth / "cartridge.json").read_text())
    noise = {n["error"] for n in meta["reviewer_noise"]}
    assert "missed_ctc" in noise  # 24 CTCs: at least one deliberately missed
    h, w = SHAPE
    for e in events:
        frame = int(e.findtext("framenum"))
        row, col = grid_position(frame, 2, 3)
        (x1, y1), (x2, y2) = [
            tuple(int(v) for v in m) for m in re.findall(r"\((\d+),(\d+)\)", e.findtext("location"))
        ]
        x1, x2, y1, y2 = x1 - w * col, x2 - w * col, y1 - h * row, y2 - h * row
        assert 0 <= x1 <= x2 < w and 0 <= y1 <= y2 < h
        # some truth object of that frame has its centroid inside the box
        assert any(
            int(o["frame"]) == frame and x1 - 1 <= float(o["x_px"]) <= x2 + 1
            and y1 - 1 <= float(o["y_px"]) <= y2 + 1 for o in objects
        )


def test_truth_outside_cartridge_and_counts(sim):
    assert sim.truth == sim.path.parent / "truth" / sim.id
    inside = {p.name for p in sim.path.rglob("*")}
    assert not inside & {"objects.csv", "cartridge.json", "preview_frame.png"}
    objects = _objects(sim)
    kinds = [o["kind"] for o in objects]
    assert kinds.count("ctc") == 24 == sim.counts["ctc"]
    levels = [int(o["her2_level"]) for o in objects if o["kind"] == "ctc"]
    assert [levels.count(k) for k in range(4)] == [6, 6, 6, 6]
    assert set(kinds) == set(KINDS) - set(CONFOUNDER_KINDS)  # every decoy kind, no confounder
    assert all(int(o["her2_level"]) == -1 for o in objects if o["kind"] != "ctc")
    clusters = [o["cluster_id"] for o in objects if o["cluster_id"] != "-1"]
    assert clusters and all(clusters.count(c) >= 2 for c in clusters)
    meta = json.loads((sim.truth / "cartridge.json").read_text())
    assert meta["counts"] == sim.counts and meta["seed"] == 11
    for o in objects:
        assert float(o["x_um"]) == pytest.approx(float(o["x_px"]) * 0.64, abs=0.01)
        if o["kind"] == "ctc":
            assert 7.0 <= float(o["diameter_um"]) <= 20.0
        if o["kind"] == "speck":
            assert float(o["diameter_um"]) < 4.0


def test_objects_are_where_truth_says(sim):
    objects = _objects(sim)
    checked = {k: 0 for k in KINDS}
    for frame in range(1, 7):
        px = _restored(_frame_file(sim, frame))
        bg = np.median(px[:, 75:225, 100:300].reshape(4, -1), axis=1)  # away from the edge
        for o in objects:
            if int(o["frame"]) != frame or o["cut_by_border"] == "1" or o["in_edge_zone"] == "1":
                continue
            if o["kind"] in ("nucleus_outside", "speck"):
                continue  # centroid falls between blob and nucleus / too small for a window
            x, y = round(float(o["x_px"])), round(float(o["y_px"]))
            win = px[:, y - 2:y + 3, x - 2:x + 3].reshape(4, -1).mean(axis=1) - bg
            dapi, ck, cd45 = win[0], win[1], win[2]
            kind = o["kind"]
            if kind == "ctc":
                assert dapi > 80 and ck > 40 and cd45 < 40, (o, win)
            elif kind == "leukocyte":
                assert dapi > 80 and cd45 > 60 and ck < 30, (o, win)
            elif kind == "ck_cd45_double":
                assert dapi > 80 and ck > 40 and cd45 > 60, (o, win)
            elif kind == "bare_nucleus":
                assert dapi > 80 and ck < 30 and cd45 < 30, (o, win)
            elif kind == "ck_debris":
                assert ck > 40 and dapi < 30, (o, win)
            checked[kind] += 1
    assert checked["ctc"] >= 10 and checked["leukocyte"] >= 20


def test_her2_increases_with_level(sim):
    objects = _objects(sim)
    by_level = {k: [] for k in range(4)}
    for frame in range(1, 7):
        px = _restored(_frame_file(sim, frame))[3]
        bg = np.median(px[75:225, 100:300])
        for o in objects:
            if int(o["frame"]) != frame or o["kind"] != "ctc" or o["in_edge_zone"] == "1":
                continue
            x, y = round(float(o["x_px"])), round(float(o["y_px"]))
            r = max(3, int(float(o["diameter_um"]) / 0.64 / 2))
            win = px[max(y - r, 0):y + r + 1, max(x - r, 0):x + r + 1]
            by_level[int(o["her2_level"])].append(float(win.mean() - bg))
        for o in objects:
            if o["kind"] == "ctc":
                lvl = int(o["her2_level"])
                ratio = float(o["her2_signal"]) / HER2_LEVEL_SIGNAL[lvl]
                assert 0.4 < ratio < 2.5
    medians = [np.median(by_level[k]) for k in range(4)]
    assert all(len(by_level[k]) >= 2 for k in range(4))
    assert medians[0] < medians[1] < medians[2] < medians[3], medians
    assert medians[3] > 100 and medians[0] < 30


def test_edge_frames_brighter_on_outer_side(sim):
    # 2 x 3 grid: frame 1 is top-left (sides top, left); frame 5 is bottom-middle
    med = np.median
    px = _restored(_frame_file(sim, 1))
    for c in range(4):
        assert med(px[c, :20, 150:250]) > med(px[c, 130:170, 150:250]) + 150
        assert med(px[c, 100:200, :20]) > med(px[c, 100:200, 180:220]) + 150
    px = _restored(_frame_file(sim, 5))
    for c in range(4):
        assert med(px[c, -20:, 150:250]) > med(px[c, 130:170, 150:250]) + 150
        assert abs(med(px[c, 100:200, :20]) - med(px[c, 100:200, 180:220])) < 40


def test_render_frame_reproduces_written_pixels(sim):
    for frame in (1, 6):
        pixels, objects = render_frame(sim.spec, frame)
        assert pixels.dtype == np.uint16 and pixels.shape == (4, *SHAPE)
        assert np.abs(_restored(_frame_file(sim, frame)) - pixels).max() <= 0.5
        assert len(objects) == sum(int(o["frame"]) == frame for o in _objects(sim))


def test_round_trip_through_read_cartridge(tmp_path):
    from ctcimg import read_cartridge

    for bits, tol in ((16, 0.5), (8, 0.5 * 4095 / 255)):
        sim = simulate_cartridge(tmp_path / str(bits), n_frames=3, n_ctc=4, seed=2, bits=bits,
                                 frame_shape=(200, 240), compression="zlib")
        cart = read_cartridge(sim.path)
        assert len(cart) == 3 and cart.grid == default_grid(3)
        for i in range(3):
            expected, _ = render_frame(sim.spec, cart.frame_info(i).number)
            assert np.abs(cart[i] - expected).max() <= tol
        n_assigned = sum(e.assigned for e in cart.reviewer_events)
        objects = _objects(sim)
        assert n_assigned == sum(o["reviewer_assigned"] == "1" for o in objects)


def test_cohort_heavy_tail_and_patients_table(tmp_path):
    cohort = simulate_cohort(tmp_path, 30, seed=1, n_frames=10, frame_shape=(256, 320),
                             leukocytes_per_frame=(0, 100))
    with open(cohort.patients_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 30
    counts = [int(r["ctc_count"]) for r in rows]
    assert sum(n == 0 for n in counts) >= 5  # many patients without CTCs
    assert max(counts) >= 100  # and a few with very many
    mixes = []
    for row, sim in zip(rows, cohort.cartridges, strict=True):
        assert row["cartridge_id"] == sim.id
        objects = _objects(sim)
        ctc = [int(o["her2_level"]) for o in objects if o["kind"] == "ctc"]
        assert len(ctc) == int(row["ctc_count"])
        bins = [int(row[k]) for k in ("her2_0", "her2_1+", "her2_2+", "her2_3+")]
        assert bins == [ctc.count(k) for k in range(4)]
        if len(ctc) >= 10:
            mixes.append(max(bins) / len(ctc))
    assert max(mixes) > 0.7 and min(mixes) < 0.6  # some patients dominated by one level
    assert len({s.spec.seed for s in cohort.cartridges}) == 30


def test_cli_simulate(tmp_path, capsys):
    from ctcimg.cli import main

    rc = main(["simulate", str(tmp_path), "--frames", "2", "--ctc", "5", "--frame-size",
               "320x240", "--her2-mix", "0,0,0,1", "--id", "12345.1.1", "--bits", "8",
               "--compress", "--preview"])
    assert rc == 0
    assert "5 CTCs" in capsys.readouterr().out
    assert (tmp_path / "12345.1.1" / "12345.xml").is_file()
    assert (tmp_path / "truth" / "12345.1.1" / "preview_frame.png").is_file()
    assert (tmp_path / "truth" / "12345.1.1" / "preview_cells.png").is_file()
    with open(tmp_path / "truth" / "12345.1.1" / "objects.csv", newline="") as fh:
        objects = list(csv.DictReader(fh))
    assert {o["her2_level"] for o in objects if o["kind"] == "ctc"} == {"3"}
    for bad in (["--her2-mix", "1,2"], ["--frame-size", "big"], ["--bits", "12"],
                ["--frames", "0"], ["--ctc", "-1"], ["--frames", "1", "--frame-size", "64x64",
                                                    "--ctc", "99"]):
        assert main(["simulate", str(tmp_path / "bad"), *bad]) == 2
        assert capsys.readouterr().err.count("\n") == 1


def test_demo_fixture_is_what_make_fixtures_writes():
    import sys

    from ctcimg import read_cartridge
    from ctcimg.simulate import cartridge_spec

    fixtures = Path(__file__).resolve().parents[1] / "fixtures"
    sys.path.insert(0, str(fixtures))
    try:
        from make_fixtures import DEMO
    finally:
        sys.path.remove(str(fixtures))
    params = {k: v for k, v in DEMO.items() if k not in ("bits", "compression")}
    spec = cartridge_spec(**params)
    cart = read_cartridge(fixtures / "demo" / DEMO["cartridge_id"])
    assert len(cart) == 6 and cart.frame_shape == (1036, 1384) and cart.grid == (2, 3)
    expected, objects = render_frame(spec, 1)
    assert np.abs(cart[0] - expected).max() <= 0.5 * 4095 / 255
    truth = fixtures / "demo" / "truth" / DEMO["cartridge_id"]
    with open(truth / "objects.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    first = [int(r["object_id"]) for r in rows if r["frame"] == "1"]
    assert first == [o.object_id for o in objects]
    assert {r["kind"] for r in rows} == set(KINDS) - set(CONFOUNDER_KINDS)


def test_cohort_writes_a_clinical_table_for_every_patient(tmp_path):
    import pandas as pd

    from ctcimg.simulate import simulate_cohort

    cohort = simulate_cohort(tmp_path, 4, seed=8, n_frames=2, frame_shape=(200, 260))
    clinical = pd.read_csv(tmp_path / "clinical.csv")
    patients = pd.read_csv(cohort.patients_csv)
    assert clinical["patient_id"].tolist() == patients["cartridge_id"].tolist()
    assert set(clinical["progressed"]) <= {0, 1}
    assert (clinical["pfs_months"] > 0).all()
