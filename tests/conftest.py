"""Shared test helpers: tiny hand-built cartridges in the exact CellSearch layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ctcimg.channels import CELLSEARCH_PAGE_ORDER, grid_position
from ctcimg.io.tiff import write_celltracks_frame


def write_xml(path: Path, rows: int, cols: int, width: int, height: int,
              filters=("DAPI", "FITC", "PE", "APC"), events=()) -> None:
    """Write a minimal CellTracks XML; ``events`` are (frame, x0, y0, x1, y1, assigned) local."""
    records = []
    for number, (frame, x0, y0, x1, y1, assigned) in enumerate(events, start=1):
        row, col = grid_position(frame, rows, cols)
        gx, gy = col * width, row * height
        records.append(
            f"<record><eventnum>{number}</eventnum><framenum>{frame}</framenum>"
            f"<numselected>1</numselected><assigned>{'true' if assigned else 'false'}</assigned>"
            f"<location>({x0 + gx},{y0 + gy}),({x1 + gx},{y1 + gy})</location></record>"
        )
    filter_xml = "".join(f"<record><filtername>{f}</filtername></record>" for f in filters)
    path.write_text(
        "<?xml version='1.0'?><archive>"
        f"<runs><record><numcols>{cols}</numcols><numrows>{rows}</numrows>"
        f"<camxsize>{width}</camxsize><camysize>{height}</camysize></record></runs>"
        f"<test_filters>{filter_xml}</test_filters>"
        f"<events>{''.join(records)}</events></archive>"
    )


def make_cartridge(root: Path, cartridge_id: str = "01140637.1.1", rows: int = 2, cols: int = 3,
                   shape: tuple[int, int] = (48, 64), bits: int = 16, encoding: str = "stretch",
                   seed: int = 0, xml: bool = True, events=()) -> tuple[Path, np.ndarray]:
    """Write a small cartridge; returns its folder and the true 12-bit frames (F, 4, H, W)

    in canonical channel order (DAPI, CK, CD45, HER2)."""
    rng = np.random.default_rng(seed)
    folder = root / cartridge_id
    images = folder / "processed"
    images.mkdir(parents=True)
    n_frames = rows * cols
    truth = rng.integers(0, 4096, size=(n_frames, 4, *shape)).astype(np.float32)
    disk_to_canonical = [("DAPI", "CK", "CD45", "HER2").index(c) for c in CELLSEARCH_PAGE_ORDER]
    for index in range(n_frames):
        pages = truth[index][disk_to_canonical]
        write_celltracks_frame(images / f"{cartridge_id}_{index + 1:03d}.tif", pages,
                               bits=bits, encoding=encoding)
    if xml:
        write_xml(folder / f"{cartridge_id.split('.')[0]}.xml", rows, cols, shape[1], shape[0],
                  events=events)
    return folder, truth


@pytest.fixture
def small_cartridge(tmp_path):
    return make_cartridge(tmp_path)
