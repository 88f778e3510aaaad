"""Tests of the synthetic cartridge simulator: layout, determinism, truth, optics, cohort."""

from __future__ import annotations

import csv
import json
import math
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
    cartridge_spec,
    default_grid,
    render_frame,
    sample_conditions,
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


# --------------------------------------------------------------------------- confounders

CONF_SHAPE = (400, 520)


@pytest.fixture(scope="module")
def confounded(tmp_path_factory):
    out = tmp_path_factory.mktemp("confounded")
    return simulate_cartridge(out, n_frames=6, n_ctc=24, seed=21, frame_shape=CONF_SHAPE,
                              confounders=2.0)


def test_default_output_is_pinned_to_the_simulator_before_confounders(tmp_path):
    """confounders = 0 (the default) reproduces the simulator of commit 5ab0f4e exactly.

    Regression pin: the digests below were computed with the code of commit 5ab0f4e (before
    the confounder model existed) for this spec; pixel digests also depend on NumPy and
    OpenCV giving the same floats, as in the shared venv. A change here means every
    committed fixture and every seeded cohort changed.
    """
    import hashlib

    fields = ("object_id", "frame", "x_px", "y_px", "kind", "her2_level", "her2_signal",
              "diameter_um", "cluster_id", "cut_by_border", "in_edge_zone",
              "reviewer_assigned", "bbox")
    spec = cartridge_spec(seed=7, n_frames=6, n_ctc=14, frame_shape=(256, 320))
    assert spec == cartridge_spec(seed=7, n_frames=6, n_ctc=14, frame_shape=(256, 320),
                                  confounders=0.0)
    pixel_digest, object_digest = hashlib.sha256(), hashlib.sha256()
    for frame in range(1, 7):
        pixels, objects = render_frame(spec, frame)
        pixel_digest.update(pixels.tobytes())
        for o in objects:
            object_digest.update(repr(tuple(getattr(o, k) for k in fields)).encode())
            assert o.kind not in CONFOUNDER_KINDS and o.context == ""
            assert not (o.defocused or o.dense or o.her2_nonspecific)
    assert pixel_digest.hexdigest() == (
        "f1985773f19bf5cfe26eca9f671d16b4a047ab4bcc7bde437f9d52d847015262")
    assert object_digest.hexdigest() == (
        "0198b7f92f917f5b58b698e2d226e027ae1cf5776ee81360cea3eeb57145c2ad")
    sim = simulate_cartridge(tmp_path, n_frames=6, n_ctc=14, seed=7, frame_shape=(256, 320))
    assert sim.sample == {}
    digests = {name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in (
        ("objects", sim.truth / "objects.csv"), ("meta", sim.truth / "cartridge.json"),
        ("xml", sim.path / "SIM000007.xml"))}
    assert digests == {
        "objects": "6a72a0a767f153208ba02ada9dcc10c746e6b141561a2d72395badfda303ebee",
        "meta": "91ab089b29ade3b70334fe91d8eea243dab039ff943fc6e6f809b85d3ad09b52",
        "xml": "ffe2073c04f1c123b950430c9827341985804eef3e516b85286c1d00e522f1b8",
    }


def _nearest_host(objects, o):
    hosts = [h for h in objects if h["frame"] == o["frame"] and h["kind"] == "ctc"
             and h["context"] in ("doublet", "leukocyte_cluster")]
    return min(hosts, key=lambda h: math.hypot(float(h["x_px"]) - float(o["x_px"]),
                                               float(h["y_px"]) - float(o["y_px"])))


def test_every_confounder_is_named_in_the_truth(confounded):
    objects = _objects(confounded)
    with open(confounded.truth / "objects.csv", newline="") as fh:
        header = next(csv.reader(fh))
    assert header[-4:] == ["context", "defocused", "dense", "her2_nonspecific"]
    kinds = {o["kind"] for o in objects}
    assert set(KINDS) <= kinds  # every decoy and confounder kind present
    contexts = {(o["kind"], o["context"]) for o in objects if o["context"]}
    assert {("ctc", "doublet"), ("ctc", "leukocyte_cluster")} <= contexts
    assert {k for k, c in contexts if c == "stuck"} <= {"leukocyte", "ck_dim_leukocyte"}
    # stuck leukocytes touch their CTC: 1-2 per doublet, 3-6 per cluster
    stuck_per_host: dict[str, int] = {}
    for o in objects:
        if o["context"] == "stuck":
            host = _nearest_host(objects, o)
            gap = math.hypot(float(host["x_px"]) - float(o["x_px"]),
                             float(host["y_px"]) - float(o["y_px"])) * 0.64
            assert gap < (float(host["diameter_um"]) + float(o["diameter_um"])) / 2 + 3.0
            assert o["reviewer_assigned"] == "0"
            stuck_per_host[host["object_id"]] = stuck_per_host.get(host["object_id"], 0) + 1
    for o in objects:
        if o["kind"] == "ctc" and o["context"]:
            low, high = (1, 2) if o["context"] == "doublet" else (3, 6)
            assert low <= stuck_per_host.get(o["object_id"], 0) <= high, o
    meta = json.loads((confounded.truth / "cartridge.json").read_text())
    for tag in ("defocused", "dense"):
        flagged = {int(o["frame"]) for o in objects if o[tag] == "1"}
        assert flagged and flagged == set(meta[f"{tag}_frames"])
        for frame in flagged:  # the flag is per frame: on every object of that frame
            assert all(o[tag] == "1" for o in objects if int(o["frame"]) == frame)
    assert 0.5 <= meta["background_scale"] <= 2.5 and 0 <= meta["her2_nonspecific"] <= 200
    assert meta["parameters"]["confounders"] == 2.0
    assert {k: meta[k] for k in ("background_scale", "her2_nonspecific")} == confounded.sample
    assert meta["counts"]["doublet"] == sum(o["context"] == "doublet" for o in objects)


def test_confounder_stains_are_where_truth_says():
    """CK-dim leukocytes: CK+ with CD45 on a ring; autofluorescent: bright everywhere;
    the background scaled by the sample's factor; nonspecific FITC on leukocytes."""
    spec = cartridge_spec(seed=40, n_frames=8, n_ctc=20, frame_shape=(1036, 1384),
                          confounders=3.0)
    plain = cartridge_spec(seed=40, n_frames=8, n_ctc=20, frame_shape=(1036, 1384))
    sample = sample_conditions(spec)
    assert sample["her2_nonspecific"] > 20  # so the FITC check below is not trivial
    ring_ratios, leuko_her2, ck_peaks, af_means = [], [], [], []
    for frame in range(1, 9):
        pixels, objects = render_frame(spec, frame)
        px = pixels.astype(np.float32)
        if not objects[0].dense:
            # same background draws as without confounders, times the sample's scale
            base = render_frame(plain, frame)[0].astype(np.float32)
            ratio = (np.median(px[:, 300:700, 400:1000].reshape(4, -1), axis=1)
                     / np.median(base[:, 300:700, 400:1000].reshape(4, -1), axis=1))
            assert np.allclose(ratio, sample["background_scale"], rtol=0.12), ratio
        if objects[0].defocused:
            continue
        for o in objects:
            x, y = o.x_px, o.y_px
            r = o.diameter_um / 2 / 0.64
            if o.cut_by_border or not (r + 9 < x < 1384 - r - 9 and r + 9 < y < 1036 - r - 9):
                continue
            ys, xs = slice(int(y - r - 8), int(y + r + 9)), slice(int(x - r - 8), int(x + r + 9))
            yy, xx = np.mgrid[ys, xs]
            d = np.hypot(xx - x, yy - y)
            win = px[:, ys, xs]
            win = win - np.median(win[:, d > r + 5], axis=1)[:, None, None]  # local background
            core, rim = d < 0.35 * r, (d > 0.8 * r) & (d < 1.25 * r)
            if o.kind == "ck_dim_leukocyte":
                ring_ratios.append(win[2][rim].mean() / max(win[2][core].mean(), 1.0))
                if not o.context:
                    ck_peaks.append(win[1][d < r].max())
            if o.kind == "leukocyte" and not o.context and not o.dense:
                leuko_her2.append(win[3][d < 0.8 * r].mean())
            if o.kind == "autofluorescent" and r > 2.5 / 0.64:
                af_means.append(win[:, d < 0.5 * r].mean(axis=1))
    assert len(ring_ratios) >= 5 and min(ring_ratios) > 2.5, ring_ratios  # CD45 on the membrane
    assert len(ck_peaks) >= 5 and min(ck_peaks) > 35, ck_peaks  # CK well above a leukocyte's
    assert len(af_means) >= 3 and (np.array(af_means) > 150).all(), af_means
    own = 3.0  # a leukocyte's own HER2 median
    assert np.median(leuko_her2) == pytest.approx(sample["her2_nonspecific"] + own, rel=0.3,
                                                  abs=6)


def test_ctc_truth_her2_is_the_level_signal_under_nonspecific_fitc(confounded):
    meta = json.loads((confounded.truth / "cartridge.json").read_text())
    assert meta["her2_nonspecific"] > 10
    for o in _objects(confounded):
        if o["kind"] == "ctc":
            assert 0.4 < float(o["her2_signal"]) / HER2_LEVEL_SIGNAL[int(o["her2_level"])] < 2.5
            # the nonspecific FITC over the cell: all of it in focus, less when blurred out
            nonspecific = float(o["her2_nonspecific"]) / meta["her2_nonspecific"]
            assert (0.8 < nonspecific <= 1.0) if o["defocused"] == "0" else (0.2 < nonspecific)


def test_defocused_frames_are_blurred_and_dense_frames_crowded(confounded):
    import cv2

    objects = _objects(confounded)
    meta = json.loads((confounded.truth / "cartridge.json").read_text())
    sharpness: dict[bool, list[float]] = {True: [], False: []}
    per_frame = {}
    for frame in range(1, 7):
        pixels, rendered = render_frame(confounded.spec, frame)
        dapi = cv2.GaussianBlur(pixels[0].astype(np.float32), (0, 0), 1.0)
        gy, gx = np.gradient(dapi)
        grad = np.hypot(gx, gy)
        bg = np.median(dapi)
        for o in rendered:
            if o.kind != "leukocyte" or o.in_edge_zone or o.context:
                continue
            x, y = int(o.x_px), int(o.y_px)
            if 12 <= x < CONF_SHAPE[1] - 12 and 12 <= y < CONF_SHAPE[0] - 12:
                height = dapi[y - 12:y + 13, x - 12:x + 13].max() - bg
                if height > 100:
                    sharpness[frame in meta["defocused_frames"]].append(
                        grad[y - 12:y + 13, x - 12:x + 13].max() / height)
        per_frame[frame] = sum(int(o["frame"]) == frame for o in objects)
    assert np.median(sharpness[False]) > 1.4 * np.median(sharpness[True]), sharpness
    dense = [per_frame[f] for f in meta["dense_frames"]]
    sparse = [n for f, n in per_frame.items() if f not in meta["dense_frames"]]
    assert min(dense) > 2 * max(sparse), per_frame
    touching = 0
    for f in meta["dense_frames"]:
        cells = [o for o in objects if int(o["frame"]) == f and o["kind"] == "leukocyte"]
        xy = np.array([[float(o["x_px"]), float(o["y_px"])] for o in cells])
        radius = np.array([float(o["diameter_um"]) / 2 / 0.64 for o in cells])
        gap = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))
        gap -= radius[:, None] + radius[None, :]
        np.fill_diagonal(gap, np.inf)
        touching += int((gap < 0.5).sum()) // 2
    assert touching >= 3


def test_confounders_are_deterministic_and_drawn_apart(tmp_path, confounded):
    kw = dict(n_frames=6, n_ctc=24, seed=21, frame_shape=CONF_SHAPE)
    again = simulate_cartridge(tmp_path / "again", confounders=2.0, **kw)
    for folder_a, folder_b in ((confounded.path, again.path), (confounded.truth, again.truth)):
        files = sorted(p.relative_to(folder_a) for p in folder_a.rglob("*") if p.is_file())
        assert len(files) >= 2
        for rel in files:
            assert (folder_a / rel).read_bytes() == (folder_b / rel).read_bytes(), rel
    milder = simulate_cartridge(tmp_path / "milder", confounders=1.0, **kw)
    assert (milder.truth / "objects.csv").read_bytes() != \
        (confounded.truth / "objects.csv").read_bytes()
    # the cartridge-level plan (CTC levels, clusters, reviewer noise) is the same stream
    levels = [int(o["her2_level"]) for o in _objects(confounded) if o["kind"] == "ctc"]
    plain = [o.her2_level for f in range(1, 7)
             for o in render_frame(cartridge_spec(**kw), f)[1] if o.kind == "ctc"]
    assert sorted(levels) == sorted(plain)


def test_reviewer_events_with_confounders(confounded):
    objects = _objects(confounded)
    root = ET.parse(confounded.path / "SIM000021.xml").getroot()
    events = root.findall("events/record")
    assigned = sum(e.findtext("assigned") == "true" for e in events)
    assert assigned == sum(o["reviewer_assigned"] == "1" for o in objects)
    doublets = [o for o in objects if o["kind"] == "ctc" and o["context"]]
    assert all(o["reviewer_assigned"] in ("0", "1") for o in doublets)
    assert sum(o["reviewer_assigned"] == "1" for o in doublets) >= len(doublets) - 1
    # CK-dim leukocytes and autofluorescent particles are presented (DAPI+ CK+), unassigned
    presented = sum(o["kind"] in ("ctc", "ck_cd45_double", "nucleus_outside", "ck_dim_leukocyte",
                                  "autofluorescent") and o["context"] != "stuck"
                    for o in objects)
    nonspecific_dim = 0
    for f in range(1, 7):
        for o in render_frame(confounded.spec, f)[1]:
            if o.kind == "cd45_dim_leukocyte" and o.presented:
                nonspecific_dim += 1
            if o.context == "stuck":
                assert not o.presented
    extra = sum(o["reviewer_assigned"] == "1" and o["kind"] in ("ck_debris", "speck",
                                                                 "bare_nucleus", "leukocyte")
                for o in objects)
    assert len(events) == presented + nonspecific_dim + extra


def test_cohort_and_cli_with_confounders(tmp_path, capsys):
    from ctcimg.cli import main

    cohort = simulate_cohort(tmp_path / "cohort", 2, seed=3, n_frames=3, frame_shape=(200, 260),
                             confounders=1.0)
    with open(cohort.patients_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row, sim in zip(rows, cohort.cartridges, strict=True):
        meta = json.loads((sim.truth / "cartridge.json").read_text())
        assert float(row["background_scale"]) == meta["background_scale"]
        assert float(row["her2_nonspecific"]) == meta["her2_nonspecific"]
    out = tmp_path / "cli"
    assert main(["simulate", str(out), "--frames", "2", "--ctc", "3", "--frame-size", "320x240",
                 "--confounders", "1.5"]) == 0
    assert "confounders:" in capsys.readouterr().out
    meta = json.loads((out / "truth" / "SIM000000.1.1" / "cartridge.json").read_text())
    assert meta["parameters"]["confounders"] == 1.5
    assert main(["simulate", str(tmp_path / "bad"), "--confounders", "-2"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_evaluate_counts_confounder_rows_and_false_positives_by_kind(confounded):
    import pandas as pd

    from ctcimg.evaluate import evaluate, read_truth

    truth = read_truth(confounded.truth)
    ctc = truth[truth["kind"] == "ctc"]
    stuck = truth["context"] == "stuck"
    wrong = pd.concat([
        truth[(truth["kind"] == "ck_dim_leukocyte") & ~stuck].iloc[:1],
        truth[stuck].iloc[:1],
    ])
    events = pd.concat([ctc, wrong])[["frame", "x_px", "y_px"]].copy()
    events["is_ctc"] = True
    events["her2_score"] = [("0", "1+", "2+", "3+")[lvl] for lvl in ctc["her2_level"]] + \
        ["0"] * len(wrong)
    stray = pd.DataFrame({"frame": [1], "x_px": [3.0], "y_px": [3.0], "is_ctc": [True],
                          "her2_score": ["0"]})
    events = pd.concat([events, stray], ignore_index=True)
    acc = evaluate(events, truth, 0.64)
    assert acc.false_positives["ck_dim_leukocyte"] == 1
    stuck_kind = wrong.iloc[1]["kind"]
    assert acc.false_positives[f"stuck_{stuck_kind}"] == 1
    assert acc.false_positives["unmatched"] == 1
    assert acc.false_positives["autofluorescent"] == 0
    doublet = acc.rows["doublet"]
    on_edge = ctc["in_edge_zone"] == 1
    assert doublet.total == int(((ctc["context"] == "doublet") & ~on_edge).sum()) > 0
    assert doublet.found == doublet.total
    host = _nearest_host(_objects(confounded), {k: str(v) for k, v in wrong.iloc[1].items()})
    extra = {"doublet": 0, "leukocyte_cluster": 0}
    extra[host["context"]] = 1
    n_doublet_calls = int((ctc["context"] == "doublet").sum())
    assert (doublet.called, doublet.correct) == (n_doublet_calls + extra["doublet"],
                                                 n_doublet_calls)
    dense_frames = set(truth.loc[truth["dense"] == 1, "frame"])
    in_dense = events["frame"].isin(dense_frames)
    assert acc.rows["dense"].called == int(in_dense.sum())
    assert acc.rows["dense"].total == int((ctc["dense"] == 1).sum() - (on_edge & (
        ctc["dense"] == 1)).sum())
    twice = acc + acc
    assert twice.rows["defocused"].total == 2 * acc.rows["defocused"].total
    assert twice.false_positives["unmatched"] == 2
    assert twice.decoys == {k: (2 * a, 2 * b) for k, (a, b) in acc.decoys.items()}
