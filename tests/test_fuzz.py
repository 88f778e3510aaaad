"""Fuzzing: every mutated cartridge gives a complete result or one line naming the file.

The cases and the contract are in ``fuzzing.py``; this runs a fixed, bounded subset
in-process (a few subprocess runs prove the no-traceback contract end to end).
``benchmarks/fuzz.py`` runs thousands.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import tifffile
from conftest import make_cartridge
from fuzzing import (
    BILLION_LAUGHS,
    FAMILIES,
    cases,
    contract_problem,
    run_case,
    warm_up,
    xml_body,
)

#: 15 cases per family, seed 0: the CI subset.
CI_CASES = 15 * len(FAMILIES)


@pytest.fixture(scope="module", autouse=True)
def _kernels_compiled(tmp_path_factory):
    """Numba compiles a kernel on its first use per sample type; not within a case's time."""
    warm_up(tmp_path_factory.mktemp("warm-up"))


@pytest.mark.parametrize("case", cases(CI_CASES, seed=0), ids=lambda case: case.name)
def test_mutated_cartridge_gives_a_result_or_one_error_line(case, tmp_path):
    outcome = run_case(case, tmp_path)
    assert outcome.handled, f"{case.name} [{outcome.mutation}]: {outcome.detail}"


def test_contract_check_catches_each_breach(tmp_path):
    root = tmp_path / "case"
    out = root / "out"
    out.mkdir(parents=True)
    named = f"ctcimg score: error: {root}/x.xml: bad number"
    assert contract_problem(2, named + "\n", out, root) is None
    assert "2 lines" in contract_problem(2, named + "\nTraceback (most recent call last)\n",
                                         out, root)
    assert "name a file" in contract_problem(2, "ctcimg score: error: bad\n", out, root)
    assert "exit 1" in contract_problem(1, "Traceback ...\n", out, root)
    (out / "events.csv").write_text("x\n")
    assert "written" in contract_problem(2, named + "\n", out, root)
    assert "summary.json was not written" in contract_problem(0, "", out, root)
    (out / "summary.json").write_text('{"ctc_count": NaN, "n_frames": 6}')
    assert "strict JSON" in contract_problem(0, "", out, root)
    (out / "summary.json").write_text('{"ctc_count": 0, "n_frames": 6}')
    assert contract_problem(0, "", out, root) is None
    assert "stderr" in contract_problem(0, "ctcimg score: warning: All-NaN slice\n", out, root)


def _limit_memory():  # runs in the child before exec
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))


def _xml_camysize_inf(folder: Path) -> Path:
    xml = folder / "01140637.xml"
    xml.write_text(xml.read_text().replace("<camysize>48</camysize>", "<camysize>inf</camysize>"))
    return xml


def _xml_billion_laughs(folder: Path) -> Path:
    xml = folder / "01140637.xml"
    xml.write_text(BILLION_LAUGHS + xml_body(xml.read_text()).replace(
        "</archive>", "<note>&lol9;</note></archive>"))
    return xml


def _tiff_stretch_inf(folder: Path) -> Path:
    frame = folder / "processed" / "01140637.1.1_001.tif"
    with tifffile.TiffFile(frame) as tif:
        pages = [page.asarray() for page in tif.pages]
    with tifffile.TiffWriter(frame) as writer:
        for page in pages:
            writer.write(page, photometric="minisblack", extratags=[
                (754, "H", 1, 1, True), (755, "H", 1, 0, True), (756, "f", 1, float("inf"), True)])
    return frame


def _tiff_float32_nan(folder: Path) -> Path:
    # float32 pages go to the kernels as stored: a NaN pixel must still be refused there
    for path in sorted((folder / "processed").glob("*.tif")):
        with tifffile.TiffFile(path) as tif:
            pages = [page.asarray().astype("float32") for page in tif.pages]
        if path.name.endswith("_001.tif"):
            pages[0][5, 5] = float("nan")
        with tifffile.TiffWriter(path) as writer:
            for page in pages:
                writer.write(page, photometric="minisblack")
    return folder / "processed" / "01140637.1.1_001.tif"


@pytest.mark.parametrize("damage", [_xml_camysize_inf, _xml_billion_laughs, _tiff_stretch_inf,
                                    _tiff_float32_nan],
                         ids=lambda damage: damage.__name__.lstrip("_"))
def test_ctcimg_process_prints_one_line_and_no_traceback(tmp_path, damage):
    folder, _ = make_cartridge(tmp_path)
    named = damage(folder)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    run = subprocess.run([sys.executable, "-m", "ctcimg", "score", str(folder), "-o", str(out)],
                         capture_output=True, text=True, timeout=300, env=env,
                         preexec_fn=_limit_memory)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2, run.stderr
    assert len(lines) == 1 and "Traceback" not in run.stderr, run.stderr
    assert lines[0].startswith(f"ctcimg score: error: {named}: "), lines[0]
    assert not out.exists()
