"""CellTracks XP exports: the .dlm reader, its errors, the simulator's XP writer, and a mixed
archive that batch discovery and read_cartridge agree on."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
from conftest import make_cartridge

from ctcimg.batch import batch_score, find_cartridges
from ctcimg.channels import CHANNELS
from ctcimg.cli import main
from ctcimg.errors import LayoutError, MetadataError
from ctcimg.io.cellsearch import read_cartridge
from ctcimg.io.celltracks_xp import DLM_FILES, XP_PAGE_ORDER
from ctcimg.io.formats import detect_format, is_cartridge_folder
from ctcimg.io.source import FrameSource
from ctcimg.io.tiff import write_celltracks_frame
from ctcimg.score import score_cartridge
from ctcimg.simulate import simulate_cartridge

SEP = "\xa6"


def _line(*fields: object) -> bytes:
    return SEP.join(str(f) for f in fields).encode("latin-1") + b"\r\n"


def make_xp(root: Path, n_frames: int = 6, shape=(40, 56), seed: int = 0,
            frames_dlm: bool = True, pages=XP_PAGE_ORDER) -> tuple[Path, np.ndarray]:
    """A hand-written XP cartridge: .dlm files in ``root/XP01``, TIFFs in ``root/XP01/tif``.

    pic.dlm lists the frames in reverse, so a frame number is only right if it is taken
    from field 4. Returns the folder and the true frames (F, 4, H, W), canonical order.
    """
    rng = np.random.default_rng(seed)
    folder = root / "XP01"
    (folder / "tif").mkdir(parents=True)
    truth = rng.integers(0, 4096, size=(n_frames, 4, *shape)).astype(np.float32)
    for index in range(n_frames):  # names sort in frame order; the number in them is not used
        write_celltracks_frame(folder / "tif" / f"scan{index + 1:04d}x.tif",
                               truth[index][[CHANNELS.index(c) for c in pages]])
    (folder / "pic.dlm").write_bytes(b"".join(
        _line(f'"2004-05-0{n % 9 + 1} 10:{n:02d}:00"', "a", "b", n, "c")
        for n in range(n_frames, 0, -1)))
    (folder / "cells.dlm").write_bytes(
        _line(1, "2004-05-04 10:03:00", 20, 10, 8, 6, *[""] * 4, "Y", "", "")
        + b"\r\n"  # a blank line is skipped
        + _line(2, "2004-05-06 10:05:00", 30.5, 12, 4, 4, *[""] * 4, "N", "", ""))
    if frames_dlm:
        names = {"DAPI": "DAPI", "HER2": "FITC", "CK": "PE", "CD45": "APC"}
        (folder / "frames.dlm").write_bytes(b"".join(
            _line(i, "x", names[c], "", "") + _line(i, "y", "ignored", "", "")
            for i, c in enumerate(pages, start=1)))
    for name in ("autoanalysis.dlm", "expdata.dlm", "exper.dlm"):
        (folder / name).write_bytes(_line("XP01", "", ""))
    return folder, truth


def test_xp_reader_takes_frames_in_name_order_pages_and_events_from_the_dlm_files(tmp_path):
    folder, truth = make_xp(tmp_path, pages=("CK", "DAPI", "HER2", "CD45"))
    cartridge = read_cartridge(folder)
    assert cartridge.layout == "celltracks_xp" and cartridge.id == "XP01"
    assert cartridge.image_dir == folder / "tif" and cartridge.frame_numbers == tuple(range(1, 7))
    assert cartridge.page_channels == ("CK", "DAPI", "HER2", "CD45")
    assert cartridge.grid is None and cartridge.pixel_size_um == pytest.approx(0.64)
    for index in (0, 5):
        np.testing.assert_allclose(cartridge[index], truth[index], atol=4095 / 65535)
    first, second = cartridge.reviewer_events
    assert (first.frame, first.x_px, first.y_px, first.bbox, first.assigned) == (
        3, 20.0, 10.0, (16.0, 7.0, 24.0, 13.0), True)
    assert (second.frame, second.assigned, second.bbox) == (5, False, (28.5, 10.0, 32.5, 14.0))
    assert set(cartridge.checksums()) >= {name for name in DLM_FILES}


def test_without_frames_dlm_the_pages_follow_the_xp_default_order(tmp_path, capsys):
    folder, truth = make_xp(tmp_path, frames_dlm=False)
    cartridge = read_cartridge(folder)
    assert cartridge.page_channels == XP_PAGE_ORDER == ("HER2", "CD45", "CK", "DAPI")
    np.testing.assert_allclose(cartridge[2], truth[2], atol=4095 / 65535)
    assert main(["inspect", str(folder), "--headers-only"]) == 0
    out = capsys.readouterr().out
    assert "celltracks_xp" in out and "frames.dlm" in out  # the missing file is named
    assert "default XP order" in out and "2 operator events (1 assigned" in out


def test_140_frame_exports_run_serpentine_from_the_bottom_row(tmp_path):
    folder, _ = make_xp(tmp_path, n_frames=140, shape=(8, 8))
    cartridge = read_cartridge(folder)
    assert cartridge.grid == (4, 35)
    cells = {n: cartridge.frame_info(n - 1) for n in (1, 35, 36, 70, 71, 106, 140)}
    assert {n: (i.row, i.col) for n, i in cells.items()} == {
        1: (3, 34), 35: (3, 0), 36: (2, 0), 70: (2, 34), 71: (1, 34), 106: (0, 0), 140: (0, 34)}
    assert cells[1].edge_sides == ("bottom", "right")
    assert cells[36].edge_sides == ("left",)
    assert not cartridge.frame_info(50).touches_cartridge_edge


@pytest.mark.parametrize(("name", "lines", "problem"), [
    ("pic.dlm", [("t1", "", "", 1)], "line 2: 4 field(s)"),
    ("pic.dlm", [("t1", "", "", "one", "")], "line 2: frame number 'one' is not a whole"),
    ("pic.dlm", [("t1", "", "", 9, "")], "line 2: frame 9 outside the 6 frame TIFFs"),
    ("pic.dlm", [('"2004-05-07 10:06:00"', "", "", 2, "")], "names frames 6 and 2"),
    ("cells.dlm", [(3, "2001-01-01 00:00:00", 1, 1, 1, 1, "", "", "", "", "N", "", "")],
     "line 2: timestamp '2001-01-01 00:00:00' is not in pic.dlm"),
    ("cells.dlm", [(3, "2004-05-04 10:03:00", "x?", 1, 1, 1, "", "", "", "", "N", "", "")],
     "line 2: field 3 (x) 'x?' is not a number"),
    ("frames.dlm", [(1, "y", "", "", ""), (9, "x", "Cy5.5", "", "")],
     "line 3: channel name 'Cy5.5'"),
])
def test_malformed_dlm_is_one_line_naming_file_and_line(tmp_path, capsys, name, lines, problem):
    folder, _ = make_xp(tmp_path)
    path = folder / name
    first = path.read_bytes().splitlines(keepends=True)[0]
    path.write_bytes(first + b"".join(_line(*fields) for fields in lines))
    with pytest.raises(MetadataError) as err:
        read_cartridge(folder)
    assert str(path) in str(err.value) and problem in str(err.value), str(err.value)
    assert main(["inspect", str(folder), "--headers-only"]) == 2
    message = capsys.readouterr().err.strip()
    assert len(message.splitlines()) == 1 and problem in message and "Traceback" not in message


def test_dlm_with_another_separator_is_refused(tmp_path):
    folder, _ = make_xp(tmp_path)
    (folder / "pic.dlm").write_text("t1;a;b;1;c\n")
    with pytest.raises(MetadataError, match=r"pic\.dlm: line 1: 1 field\(s\) separated by '¦'"):
        read_cartridge(folder)


def test_cartridge_is_the_nearest_folder_above_pic_dlm_holding_the_frames(tmp_path):
    folder, _ = make_xp(tmp_path / "site")
    dlm = folder / "data"
    dlm.mkdir()
    for name in DLM_FILES:
        shutil.move(str(folder / name), str(dlm / name))
    assert detect_format(folder).name == "celltracks_xp"  # .dlm in data/, frames in tif/
    assert read_cartridge(folder).reviewer_events  # events still read from data/cells.dlm
    assert not is_cartridge_folder(dlm)  # no frames below data/
    assert not is_cartridge_folder(tmp_path / "site")  # the .dlm branch holds the frames
    with pytest.raises(LayoutError, match="XP01/data/ but is not itself the cartridge"):
        read_cartridge(tmp_path / "site")


def test_simulated_xp_cartridge_scores_like_the_same_frames_in_the_xml_layout(tmp_path):
    kw = dict(n_frames=175, n_ctc=14, seed=21, frame_shape=(96, 128), confounders=1.0)
    xml = simulate_cartridge(tmp_path / "xml", **kw)
    xp = simulate_cartridge(tmp_path / "xp", layout="celltracks_xp", **kw)
    assert (xp.path / "pic.dlm").is_file() and not list(xp.path.glob("*.xml"))
    assert (xml.truth / "objects.csv").read_bytes() == (xp.truth / "objects.csv").read_bytes()
    cartridge = read_cartridge(xp.path)
    assert (cartridge.layout, cartridge.grid) == ("celltracks_xp", (5, 35))
    np.testing.assert_array_equal(cartridge[40], read_cartridge(xml.path)[40])

    results = {}
    for name, sim in (("xml", xml), ("xp", xp)):
        out = score_cartridge(sim.path).to_dir(tmp_path / f"result_{name}")
        results[name] = (out / "events.csv").read_bytes(), json.loads(
            (out / "summary.json").read_text())
    (events_xml, summary_xml), (events_xp, summary_xp) = results["xml"], results["xp"]
    assert events_xp == events_xml
    reviewer = summary_xp["reviewer"]
    assert reviewer == summary_xml["reviewer"]
    assert reviewer["reviewer_ctcs"] > 0 and reviewer["matched"] > 0
    # what differs is where the pages and the pixel size came from, and the input files
    differing = {key for key in summary_xml if summary_xml[key] != summary_xp.get(key)}
    assert differing == {"path", "pixel_size_source", "layout", "page_channels",
                         "input_checksums", "input_stats"}
    assert summary_xp["layout"] == "celltracks_xp" and summary_xp["pixel_size_source"] == "default"


def test_simulated_140_frame_xp_cartridge_has_its_edges_where_the_reader_expects(tmp_path):
    sim = simulate_cartridge(tmp_path, n_frames=140, n_ctc=4, frame_shape=(64, 96), seed=2,
                             layout="celltracks_xp", leukocytes_per_frame=(0, 0), decoys=False)
    assert sim.spec.scan_from_bottom
    cartridge = read_cartridge(sim.path)
    assert cartridge.grid == (4, 35)
    for index, bright in ((0, ("bottom", "right")), (105, ("top", "left")), (50, ())):
        assert cartridge.frame_info(index).edge_sides == bright
        frame = cartridge[index]
        nuclei_or_ck = np.maximum(frame[CHANNELS.index("DAPI")], frame[CHANNELS.index("CK")])
        height, width = nuclei_or_ck.shape
        middle_rows, middle_cols = slice(height // 3, 2 * height // 3), slice(width // 3,
                                                                              2 * width // 3)
        strips = {"top": nuclei_or_ck[:3, middle_cols], "bottom": nuclei_or_ck[-3:, middle_cols],
                  "left": nuclei_or_ck[middle_rows, :3], "right": nuclei_or_ck[middle_rows, -3:]}
        level = np.median(nuclei_or_ck)
        assert {side for side, strip in strips.items() if strip.mean() > 2 * level} == set(
            bright), index
    with pytest.raises(ValueError, match="layout must be one of"):
        simulate_cartridge(tmp_path, n_frames=2, frame_shape=(64, 64), n_ctc=0, layout="xp")


def test_mixed_archive_batch_finds_every_layout_the_reader_opens(tmp_path):
    archive = tmp_path / "archive"
    small = dict(n_frames=6, n_ctc=3, frame_shape=(96, 128), seed=4)
    xml = simulate_cartridge(archive / "site_a", "XMLCART.1.1", **small)
    xp = simulate_cartridge(archive / "site_b", "XPCART.1.1", layout="celltracks_xp", **small)
    plain = archive / "site_c" / "plain-scan"  # CellTracks TIFFs renamed, no XML
    plain.mkdir(parents=True)
    for index, path in enumerate(sorted((xml.path / "processed").glob("*.tif")), start=1):
        shutil.copy(path, plain / f"img-{index:03d}.tif")
    ome = archive / "site_c" / "ome_fields"  # generic frames: the page order must be given
    ome.mkdir()
    for index in range(2):
        tifffile.imwrite(ome / f"field{index + 1}.ome.tif", np.zeros((4, 64, 64), np.uint16),
                         metadata={"axes": "CYX"}, ome=True)
    nested, _ = make_cartridge(archive / "site_d", "01140637.1.1")  # conftest XML layout

    found = find_cartridges(archive)
    assert found == sorted([xml.path, xp.path, plain, ome, nested])
    opened = {p.name: read_cartridge(p, channels="DAPI,CK,CD45,HER2" if p == ome else None)
              for p in found}
    assert all(isinstance(c, FrameSource) for c in opened.values())
    layouts = {name: cartridge.layout for name, cartridge in opened.items()}
    assert layouts == {"XMLCART.1.1": "cellsearch", "XPCART.1.1": "celltracks_xp",
                       "plain-scan": "cellsearch", "ome_fields": "generic",
                       "01140637.1.1": "cellsearch"}

    outcomes = {o.cartridge_id: o for o in batch_score(archive, tmp_path / "out", workers=0)}
    assert set(outcomes) == {p.name for p in found}
    assert not outcomes["ome_fields"].ok and "channel order" in outcomes["ome_fields"].error
    assert all(o.ok for cid, o in outcomes.items() if cid != "ome_fields")
    assert outcomes["XPCART.1.1"].summary["layout"] == "celltracks_xp"
    # 6 frames match no XP grid, so edges are handled differently; the operator events agree
    assert (outcomes["XPCART.1.1"].summary["reviewer"]["reviewer_ctcs"]
            == outcomes["XMLCART.1.1"].summary["reviewer"]["reviewer_ctcs"] > 0)


def test_cli_simulate_writes_the_xp_layout(tmp_path):
    assert main(["simulate", str(tmp_path), "--frames", "2", "--frame-size", "64x64", "--ctc",
                 "1", "--id", "CLI01.1.1", "--layout", "celltracks_xp"]) == 0
    cartridge = read_cartridge(tmp_path / "CLI01.1.1")
    assert cartridge.layout == "celltracks_xp" and len(cartridge) == 2
    assert len(cartridge.reviewer_events) >= 1
