"""The HTML review report: payload completeness, bad input, rendering and reviewer round trip.

Browser tests need Chromium (Debian: ``apt-get install chromium``) and, for the driven
reviewer round trip, the ``playwright`` Python package (never ``playwright install``: it
drives the system Chromium). Without them those tests skip, saying why.
"""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ctcimg.cli import main
from ctcimg.errors import InputError
from ctcimg.gate import REJECT_REASONS
from ctcimg.her2 import calibrate, read_labelled_events
from ctcimg.report import write_report
from ctcimg.report.browser import CHROMIUM_FLAGS, find_chromium, screenshot
from ctcimg.report.histogram import signal_histogram_svg
from ctcimg.report.images import encode_strip, png_gray, strip

CHROMIUM = find_chromium()
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH (apt-get install chromium, or set "
    "CTCIMG_CHROMIUM)")


@pytest.fixture(scope="module")
def scored(tmp_path_factory) -> Path:
    """A small simulated cartridge with CTCs in every HER2 bin, scored to a result folder."""
    from ctcimg.score import score_cartridge
    from ctcimg.simulate import simulate_cartridge

    root = tmp_path_factory.mktemp("report")
    sim = simulate_cartridge(root / "in", "RPT0001.1.1", n_frames=4, n_ctc=48, seed=3,
                             frame_shape=(518, 692), leukocytes_per_frame=(10, 20))
    out = root / "result"
    score_cartridge(sim.path).to_dir(out)
    return out


@pytest.fixture(scope="module")
def report(scored) -> Path:
    return write_report(scored)


def payload(html_path: Path) -> dict:
    match = re.search(r'<script type="application/json" id="ctcimg-data">(.*?)</script>',
                      html_path.read_text(encoding="utf-8"), re.S)
    assert match, "no JSON payload in the page"
    return json.loads(match.group(1))


def decode(record_img: str) -> np.ndarray:
    from PIL import Image

    return np.array(Image.open(io.BytesIO(base64.b64decode(record_img))).convert("L"))


# --- content ---------------------------------------------------------------------------------


def test_every_ctc_has_its_thumbnail_in_the_page(scored, report):
    events = pd.read_csv(scored / "events.csv")
    data = payload(report)
    f = {name: i for i, name in enumerate(data["fields"])}
    ctc_ids = set(events.loc[events["is_ctc"], "event_id"].astype(int))
    assert len(ctc_ids) >= 20
    assert {r[f["id"]] for r in data["ctcs"]} == ctc_ids
    assert len(data["ctcs"]) == len(ctc_ids)
    thumbs = np.load(scored / "thumbnails.npz")
    by_id = dict(zip(thumbs["event_id"].tolist(), thumbs["thumbnails"], strict=True))
    for record in data["ctcs"]:
        image = decode(record[f["img"]])
        assert image.shape == (48, 4 * 48)
        # lossy WebP: close to the thumbnail cut during scoring
        assert np.abs(image.astype(int) - strip(by_id[record[f["id"]]])).mean() < 6


def test_ctcs_sorted_by_bin_then_signal_with_event_fields(scored, report):
    events = pd.read_csv(scored / "events.csv").set_index("event_id")
    data = payload(report)
    f = {name: i for i, name in enumerate(data["fields"])}
    keys = [(data["bins"].index(r[f["score"]]), r[f["signal"]]) for r in data["ctcs"]]
    assert keys == sorted(keys)
    for r in data["ctcs"]:
        row = events.loc[r[f["id"]]]
        assert r[f["frame"]] == row["frame"]
        assert r[f["score"]] == row["her2_score"]
        assert r[f["signal"]] == pytest.approx(row["her2_signal"])
        assert r[f["x_um"]] == pytest.approx(row["x_um"], abs=0.01)


def test_rejected_candidates_grouped_by_reason(scored, report):
    events = pd.read_csv(scored / "events.csv", keep_default_na=False).set_index("event_id")
    thumbs = set(np.load(scored / "thumbnails.npz")["event_id"].tolist())
    data = payload(report)
    f = {name: i for i, name in enumerate(data["fields"])}
    expected = {i for i in thumbs if events.loc[i, "is_ctc"] in (False, "False")}
    seen = set()
    for reason, records in data["rejected"].items():
        assert reason in REJECT_REASONS
        for r in records:
            assert events.loc[r[f["id"]], "reject_reason"] == reason
            seen.add(r[f["id"]])
    assert seen == expected
    html = report.read_text()
    for reason in data["rejected"]:
        assert f'data-reason="{reason}"' in html
        assert REJECT_REASONS[reason].split(" (")[0] in html


def test_page_is_self_contained(report):
    html = report.read_text()
    assert not re.search(r'(src|href)\s*=\s*["\']?(https?:)?//', html)
    assert "@import" not in html and "url(http" not in html
    assert "<svg" in html and 'class="edge"' in html
    summary = json.loads((report.parent / "summary.json").read_text())
    assert summary["cartridge_id"] in html
    assert summary["engine"]["version"] in html
    for name, call in summary["calls"].items():
        assert name in html and call.replace("_", " ") in html


def test_png_option_is_lossless(scored, tmp_path):
    out = write_report(scored, tmp_path / "lossless.html", image_format="png")
    data = payload(out)
    f = {name: i for i, name in enumerate(data["fields"])}
    thumbs = np.load(scored / "thumbnails.npz")
    by_id = dict(zip(thumbs["event_id"].tolist(), thumbs["thumbnails"], strict=True))
    assert data["mime"] == "image/png"
    for record in data["ctcs"][:10]:
        assert np.array_equal(decode(record[f["img"]]), strip(by_id[record[f["id"]]]))


def test_png_encoder_round_trips_random_images():
    from PIL import Image

    rng = np.random.default_rng(0)
    for shape in [(1, 1), (48, 192), (7, 13)]:
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        assert np.array_equal(np.array(Image.open(io.BytesIO(png_gray(image)))), image)
    with pytest.raises(ValueError):
        encode_strip(np.zeros((4, 8, 8), np.uint8), "gif")


def test_histogram_svg_has_bars_edges_and_copes_with_no_ctcs():
    svg = signal_histogram_svg(np.r_[np.full(5, 10.0), np.full(3, 400.0), np.nan], (22, 75, 190))
    assert svg.count('class="edge"') == 3 and svg.count('class="bar"') == 2
    assert "<title>5 CTCs" in svg
    empty = signal_histogram_svg([], (22, 75, 190))
    assert 'class="bar"' not in empty and empty.endswith("</svg>")


def test_cartridge_without_ctcs_still_renders(scored, tmp_path):
    folder = tmp_path / "none"
    shutil.copytree(scored, folder)
    events = pd.read_csv(folder / "events.csv")
    events["reject_reason"] = events["reject_reason"].fillna("").replace("", "not_round")
    events["is_ctc"] = False
    events["her2_score"] = ""
    events.to_csv(folder / "events.csv", index=False)
    data = payload(write_report(folder))
    assert data["ctcs"] == []
    assert len(data["rejected"]["not_round"]) >= 20
    assert 'class="bar"' not in (folder / "report.html").read_text()


def test_out_of_focus_frames_are_named_in_the_header(scored, report, tmp_path):
    assert "Out of focus" not in report.read_text()  # the simulated cartridge is in focus
    folder = tmp_path / "blurred"
    shutil.copytree(scored, folder)
    summary = json.loads((folder / "summary.json").read_text())
    summary["out_of_focus_frames"] = [{"frame": 3, "blur_px2": 21.5, "ctcs": 2},
                                      {"frame": 7, "blur_px2": 9.0, "ctcs": 1}]
    (folder / "summary.json").write_text(json.dumps(summary))
    html = write_report(folder).read_text()
    assert "review their events): frames 3 (2 CTCs), 7 (1 CTC)</div>" in html


# --- command line and bad input --------------------------------------------------------------


def test_cli_writes_default_and_named_file(scored, tmp_path, capsys):
    copy = tmp_path / "result"
    shutil.copytree(scored, copy)
    (copy / "report.html").unlink(missing_ok=True)
    assert main(["report", str(copy)]) == 0
    assert (copy / "report.html").is_file()
    assert "report.html" in capsys.readouterr().out
    named = tmp_path / "sub" / "r.html"
    assert main(["report", str(copy), "-o", str(named)]) == 0
    assert payload(named)["cartridge_id"] == "RPT0001.1.1"


@pytest.mark.parametrize("damage, message", [
    ("missing_dir", "no such result folder"),
    ("summary.json", "no summary.json"),
    ("events.csv", "no events.csv"),
    ("thumbnails.npz", "--no-thumbnails"),
    ("bad_npz", "cannot read thumbnails"),
    ("bad_summary", "cannot read"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(scored, tmp_path, capsys,
                                                         damage, message):
    folder = tmp_path / "result"
    if damage != "missing_dir":
        shutil.copytree(scored, folder)
        (folder / "report.html").unlink(missing_ok=True)
        if damage == "bad_npz":
            (folder / "thumbnails.npz").write_bytes(b"not a zip")
        elif damage == "bad_summary":
            (folder / "summary.json").write_text("{")
        else:
            (folder / damage).unlink()
        if damage == "thumbnails.npz":  # as 'ctcimg score --no-thumbnails' leaves it
            summary = json.loads((folder / "summary.json").read_text())
            summary["config"]["thumbnails"] = False
            (folder / "summary.json").write_text(json.dumps(summary))
    before = sorted(p.name for p in folder.iterdir()) if folder.exists() else []
    assert main(["report", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and err.startswith("ctcimg report: error:")
    after = sorted(p.name for p in folder.iterdir()) if folder.exists() else []
    assert after == before
    with pytest.raises(InputError):
        write_report(folder)


# --- browser ---------------------------------------------------------------------------------


@needs_chromium
def test_screenshot_shows_drawn_gallery(report, tmp_path):
    from PIL import Image

    # The thumbnails are drawn when their images have loaded, which headless Chromium's
    # virtual time does not always wait for: once, in a full test run on a fresh clone, the
    # shot came back with the page laid out and no thumbnail drawn (alone, under CPU load
    # too, it passed every time). A page that never draws fails all three shots.
    for attempt in range(3):
        png = screenshot(report, tmp_path / f"report{attempt}.png", size=(1400, 2000))
        image = np.array(Image.open(png).convert("RGB"))
        assert image.shape == (2000, 1400, 3)
        # drawn overlay tiles contain saturated green (CK) and blue (DAPI) pixels
        r, g, b = (image[..., i].astype(int) for i in range(3))
        green = ((g > 120) & (r < 60) & (b < 60)).sum()
        if green > 500:
            break
    assert green > 500
    assert ((b > 120) & (r < 60) & (g < 90)).sum() > 50


@pytest.fixture()
def page(report):
    playwright = pytest.importorskip(
        "playwright.sync_api", reason="reviewer round trip needs the 'playwright' package "
        "(pip install playwright; it drives the system chromium, no 'playwright install')")
    if CHROMIUM is None:
        pytest.skip("no chromium on PATH (apt-get install chromium)")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=[a for a in CHROMIUM_FLAGS if a != "--headless"])
        context = browser.new_context(accept_downloads=True, viewport={"width": 1400,
                                                                       "height": 1000})
        tab = context.new_page()
        tab.goto(report.resolve().as_uri())
        tab.wait_for_selector("body[data-ready='1']")
        yield tab
        context.close()
        browser.close()


def export(page, tmp_path: Path, scope: str = "all") -> Path:
    page.check(f"input[name=scope][value={scope}]")
    with page.expect_download() as info:
        page.click("#export")
    download = info.value
    assert download.suggested_filename == "RPT0001.1.1_corrections.csv"
    target = tmp_path / f"{scope}_{download.suggested_filename}"
    download.save_as(target)
    return target


def test_reviewer_round_trip_feeds_calibrate(page, scored, tmp_path):
    events = pd.read_csv(scored / "events.csv")
    ctcs = events[events["is_ctc"]].set_index("event_id")
    cards = page.locator(".gallery[data-bin='3+'] .cell")
    first, second = (int(cards.nth(i).get_attribute("data-id")) for i in (0, 1))
    cards.nth(0).click()
    page.keyboard.press("1")      # 3+ -> 1+; selection moves on to the next cell ...
    page.keyboard.press("x")      # ... which is not a CTC
    assert page.locator(f".cell[data-id='{first}'] .badge").inner_text() == "\u2192 1+"
    assert "not CTC" in page.locator(f".cell[data-id='{second}'] .badge").inner_text()
    # a rejected candidate the reviewer calls a 2+ CTC (its group is built on opening)
    page.click("details.rejected > summary")
    group = page.locator("details.reason[data-reason]").first
    assert group.locator(".cell").count() == 0
    group.locator("summary").click()
    rejected = group.locator(".cell").first
    rejected_id = int(rejected.get_attribute("data-id"))
    rejected.click()
    page.click("#toolbar button[data-score='2']")
    assert page.locator("#review-status").inner_text() == "3 reviewed, 3 changed"

    exported = export(page, tmp_path, "all")
    table = pd.read_csv(exported, dtype={"reviewer_score": str})
    for column in ("event_id", "frame", "x_px", "y_px", "her2_signal", "her2_score",
                   "reviewer_score"):
        assert column in table.columns
    table = table.set_index("event_id")
    assert set(table.index) == set(ctcs.index) | {rejected_id}
    assert table.loc[first, "reviewer_score"] == "1"
    assert table.loc[second, "reviewer_score"] == "not_ctc"
    assert table.loc[rejected_id, "reviewer_score"] == "2"
    untouched = table.drop([first, second, rejected_id])
    assert (untouched["reviewed"] == "no").all()
    assert (untouched["reviewer_score"].astype(int)
            == untouched["her2_score"].map({"0": 0, "1+": 1, "2+": 2, "3+": 3})).all()
    assert np.allclose(table.loc[ctcs.index, "her2_signal"], ctcs["her2_signal"])

    signal, score = read_labelled_events(exported)
    assert len(signal) == len(ctcs)  # minus the not-CTC, plus the rescued candidate
    result = calibrate(signal, score)
    assert result.n_events == len(ctcs)
    if _has_calibrate_command():
        profile = tmp_path / "profile.json"
        assert main(["calibrate", str(exported), "-o", str(profile)]) == 0
        assert len(json.loads(profile.read_text())["edges"]) == 3

    only = pd.read_csv(export(page, tmp_path, "reviewed"), dtype={"reviewer_score": str})
    assert sorted(only["event_id"]) == sorted([first, second, rejected_id])
    assert (only["reviewed"] == "yes").all()

    # corrections survive a reload (localStorage, tied to this events.csv)
    page.reload()
    page.wait_for_selector("body[data-ready='1']")
    assert page.locator("#review-status").inner_text() == "3 reviewed, 3 changed"


def test_unreviewed_export_is_the_engine_scoring(page, scored, tmp_path):
    page.click("#reset")
    table = pd.read_csv(export(page, tmp_path, "all"), dtype={"reviewer_score": str})
    events = pd.read_csv(scored / "events.csv")
    assert sorted(table["event_id"]) == sorted(events.loc[events["is_ctc"], "event_id"])
    signal, score = read_labelled_events(table.pipe(_to_csv, tmp_path / "engine.csv"))
    assert np.array_equal(score, table["her2_score"].map({"0": 0, "1+": 1, "2+": 2,
                                                         "3+": 3}).to_numpy())


def _to_csv(table: pd.DataFrame, path: Path) -> Path:
    table.to_csv(path, index=False)
    return path


def _has_calibrate_command() -> bool:
    import importlib.util

    return importlib.util.find_spec("ctcimg.commands.calibrate") is not None
