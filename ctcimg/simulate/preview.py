"""Preview PNGs in the truth folder: one annotated frame and a gallery of cells per HER2 level.

``preview_frame.png``: a frame composite (DAPI blue, CK green, CD45 red) beside its HER2
(FITC) channel in grey, every truth object boxed and labelled; ``preview_cells.png``: up
to six CTCs per HER2 level, each as DAPI | CK | CD45 | HER2 tiles.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ctcimg.simulate.confounders import _confounder_plan
from ctcimg.simulate.optics import _opencv
from ctcimg.simulate.plan import _plan
from ctcimg.simulate.spec import CartridgeSpec
from ctcimg.simulate.truth import SimulatedObject

_CROP = 48
_CROPS_PER_LEVEL = 6
#: display windows (12-bit, above the crop's background) per canonical channel
_DISPLAY_MAX = np.array([1200.0, 1500.0, 1200.0, 600.0], dtype=np.float32)


@dataclass
class _Preview:
    """What the preview PNGs show, collected while the frames are written (:func:`_collect`)."""

    frame_number: int  # the frame shown (:func:`_preview_frame`)
    crops: dict[int, list[np.ndarray]] = field(
        default_factory=lambda: {0: [], 1: [], 2: [], 3: []})  # CTC crops per HER2 level
    pixels: np.ndarray | None = None  # the frame shown, once rendered
    objects: list[SimulatedObject] | None = None


def _preview_frame(spec: CartridgeSpec) -> int:
    """The frame the preview shows: with confounders the one with the most CTCs among
    leukocytes, else the one with the most CTCs (the first such)."""
    plan = _plan(spec)
    contexts = _confounder_plan(spec).contexts if spec.confounders > 0 else None
    return max(range(1, spec.n_frames + 1), key=lambda f: (
        sum(bool(c) for c in contexts[f - 1]) if contexts else 0,
        sum(len(g) for g in plan.ctc_levels[f - 1]), -f))


def _collect(preview: _Preview, frame_number: int, pixels: np.ndarray,
             objects: list[SimulatedObject]) -> None:
    """Keep what the previews need from a rendered frame."""
    _collect_crops(pixels, objects, preview.crops)
    if frame_number == preview.frame_number:
        preview.pixels, preview.objects = pixels, objects


def _write_previews(truth: Path, spec: CartridgeSpec, preview: _Preview) -> None:
    """``preview_frame.png`` and ``preview_cells.png`` in the truth folder."""
    if preview.pixels is not None:
        _write_frame_preview(truth / "preview_frame.png", spec, preview.frame_number,
                             preview.pixels, preview.objects)
        _write_cells_preview(truth / "preview_cells.png", preview.crops)


def _collect_crops(pixels, objects, crops) -> None:
    half = _CROP // 2
    _, h, w = pixels.shape
    for o in objects:
        if (o.kind != "ctc" or o.in_edge_zone
                or len(crops[o.her2_level]) >= _CROPS_PER_LEVEL):
            continue
        x, y = int(round(o.x_px)), int(round(o.y_px))
        if half <= x < w - half and half <= y < h - half:
            crops[o.her2_level].append(pixels[:, y - half:y + half, x - half:x + half].copy())


def _to_display(img: np.ndarray, channel: int, background: float | None = None) -> np.ndarray:
    img = img.astype(np.float32)
    bg = float(np.percentile(img, 20)) if background is None else background
    out = np.clip((img - bg) * (255.0 / _DISPLAY_MAX[channel]), 0, 255)
    return out.astype(np.uint8)


def _write_frame_preview(path: Path, spec, frame_number, pixels, objects) -> None:
    """Frame composite: DAPI blue, CK green, CD45 red; HER2 grey panel beside it; truth boxes."""
    cv2 = _opencv()

    bgs = [float(np.median(pixels[c, ::8, ::8])) for c in range(4)]
    rgb = np.dstack([_to_display(pixels[c], c, bgs[c]) for c in (0, 1, 2)])  # B, G, R for cv2
    her2 = cv2.cvtColor(_to_display(pixels[3], 3, bgs[3]), cv2.COLOR_GRAY2BGR)
    colours = {
        "ctc": (0, 255, 255), "ck_debris": (255, 0, 255), "ck_cd45_double": (0, 128, 255),
        "speck": (255, 255, 0), "bare_nucleus": (255, 128, 128), "nucleus_outside": (128, 255, 0),
        "ck_dim_leukocyte": (0, 0, 255), "cd45_dim_leukocyte": (128, 128, 255),
        "autofluorescent": (255, 255, 255), "stuck": (160, 160, 160),
    }
    for panel in (rgb, her2):
        for o in objects:
            key = "stuck" if o.context == "stuck" else o.kind
            if key not in colours:
                continue
            x1, y1, x2, y2 = o.bbox
            cv2.rectangle(panel, (x1 - 3, y1 - 3), (x2 + 3, y2 + 3), colours[key], 1)
            label = f"{o.her2_level}+" if o.kind == "ctc" else key
            if o.kind == "ctc" and o.context:
                label += f" {o.context}"
            cv2.putText(panel, label, (x1, max(y1 - 6, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                        colours[key], 1, cv2.LINE_AA)
    sep = np.full((rgb.shape[0], 8, 3), 255, np.uint8)
    title = np.zeros((28, rgb.shape[1] * 2 + 8, 3), np.uint8)
    tags = "".join(f", {tag}" for tag in ("defocused", "dense")
                   if objects and getattr(objects[0], tag))
    cv2.putText(title, f"{spec.cartridge_id} frame {frame_number}{tags}: DAPI blue, CK green, "
                f"CD45 red | HER2 (FITC) grey; boxes = truth", (6, 19),
                cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
    cv2.imwrite(str(path), np.vstack([title, np.hstack([rgb, sep, her2])]))


def _write_cells_preview(path: Path, crops) -> None:
    """Cell gallery: a row per HER2 level, each cell as DAPI | CK | CD45 | HER2 tiles."""
    cv2 = _opencv()

    zoom = 2
    tile = _CROP * zoom
    cell_w = 4 * tile + 3 * 2
    gap = 10
    label_w = 60
    head = 24
    width = label_w + _CROPS_PER_LEVEL * (cell_w + gap)
    canvas = np.full((head + 4 * (tile + gap), width), 40, np.uint8)
    for ci, name in enumerate(("DAPI", "CK", "CD45", "HER2")):
        cv2.putText(canvas, name, (label_w + ci * (tile + 2) + 4, 16),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.45, 255, 1, cv2.LINE_AA)
    for level in range(4):
        y = head + level * (tile + gap)
        cv2.putText(canvas, f"{level}+" if level else "0", (10, y + tile // 2),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.8, 255, 2, cv2.LINE_AA)
        for k, crop in enumerate(crops[level]):
            x = label_w + k * (cell_w + gap)
            for c in range(4):
                disp = _to_display(crop[c], c)
                disp = cv2.resize(disp, (tile, tile), interpolation=cv2.INTER_NEAREST)
                xc = x + c * (tile + 2)
                canvas[y:y + tile, xc:xc + tile] = disp
    cv2.imwrite(str(path), canvas)
