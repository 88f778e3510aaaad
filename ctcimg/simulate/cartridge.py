"""Writing one simulated cartridge: frame TIFFs, the export's metadata, truth and previews.

The frames are rendered one at a time (:func:`ctcimg.simulate.render.render_frame`) and
written as CellTracks TIFFs (:func:`ctcimg.io.tiff.write_celltracks_frame`); the folder
layout and the metadata come from the writer of the chosen export format, which sits
beside that format's reader: :mod:`ctcimg.io.celltracks` (the CellTracks XML layout) or
:mod:`ctcimg.io.celltracks_xp` (the ``.dlm`` files). The truth goes to
:mod:`ctcimg.simulate.truth`'s files, the previews to :mod:`ctcimg.simulate.preview`'s.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ctcimg.channels import CELLSEARCH_PAGE_ORDER, CHANNELS
from ctcimg.io import celltracks, celltracks_xp
from ctcimg.io.metadata import ReviewerEvent
from ctcimg.simulate.confounders import sample_conditions
from ctcimg.simulate.preview import _collect, _Preview, _preview_frame, _write_previews
from ctcimg.simulate.render import render_frame
from ctcimg.simulate.reviewer import REVIEWERS, _review
from ctcimg.simulate.spec import CartridgeSpec, cartridge_spec
from ctcimg.simulate.truth import SimulatedObject, _write_truth

#: per layout: the module that reads and writes it
_LAYOUT_WRITER = {"cellsearch": celltracks, "celltracks_xp": celltracks_xp}
#: per layout: the canonical channel of each TIFF page, as indices into CHANNELS
_PAGE_INDEX = {
    "cellsearch": tuple(CHANNELS.index(name) for name in CELLSEARCH_PAGE_ORDER),
    "celltracks_xp": tuple(CHANNELS.index(name) for name in celltracks_xp.XP_PAGE_ORDER),
}


@dataclass(frozen=True)
class SimulatedCartridge:
    """What :func:`simulate_cartridge` wrote.

    Attributes
    ----------
    path
        The cartridge folder (``out_dir/<id>``).
    truth
        The truth folder (``out_dir/truth/<id>``).
    id
        Cartridge id.
    n_frames
        Frames written.
    counts
        Objects written per kind, plus ``her2_0`` … ``her2_3`` CTC counts per level.
    spec
        The spec; ``render_frame(spec, n)`` regenerates frame ``n`` exactly.
    sample
        With confounders: the per-sample draws ``background_scale`` and
        ``her2_nonspecific`` (12-bit units); empty without.
    """

    path: Path
    truth: Path
    id: str
    n_frames: int
    counts: dict[str, int] = field(default_factory=dict)
    spec: CartridgeSpec | None = None
    sample: dict[str, float] = field(default_factory=dict)


def simulate_cartridge(
    out_dir: str | os.PathLike,
    cartridge_id: str | None = None,
    *,
    bits: int = 16,
    encoding: str = "stretch",
    compression: str | None = None,
    preview: bool = False,
    reviewer: str = "default",
    layout: str = "cellsearch",
    **spec_options,
) -> SimulatedCartridge:
    """Write one synthetic CellSearch cartridge and its ground truth.

    Writes ``out_dir/<id>/<id before first dot>.xml``, one 4-page TIFF per frame in
    ``out_dir/<id>/processed/<id>_<NNN>.tif`` (pages DAPI, FITC/HER2, PE/CK, APC/CD45),
    and the truth in ``out_dir/truth/<id>/`` (``objects.csv``, ``cartridge.json`` and,
    with ``preview``, ``preview_frame.png`` and ``preview_cells.png``). With
    ``layout="celltracks_xp"`` the cartridge is a CellTracks XP export instead: the six
    ``.dlm`` files in ``out_dir/<id>/`` and the TIFFs in ``out_dir/<id>/images/`` with pages
    FITC, APC, PE, DAPI (:mod:`ctcimg.io.celltracks_xp`); pixels and truth are the same.

    Parameters
    ----------
    out_dir
        Folder receiving the cartridge folder and ``truth/``.
    cartridge_id
        CellSearch-style id; default ``SIM<seed:06d>.1.1``.
    bits, encoding, compression
        Passed to :func:`ctcimg.io.tiff.write_celltracks_frame`.
    preview
        Also write preview PNGs to the truth folder.
    reviewer
        The lab's reviewer definition for the XML's events (a key of
        :data:`~ctcimg.simulate.REVIEWERS`); other than "default", the XML lists every
        presented candidate (:data:`~ctcimg.simulate.PRESENTED_KINDS`) with ``assigned`` by
        that definition.
    layout
        ``"cellsearch"`` (the CellTracks XML layout, default) or ``"celltracks_xp"``. An XP
        export records no grid: its reader takes it from the frame count, so a count outside
        :data:`ctcimg.channels.GRID_BY_FRAME_COUNT` is read with an unknown grid, and 140
        frames run serpentine from the bottom row (the edge bands are placed accordingly).
    **spec_options
        What is in the cartridge, as :func:`~ctcimg.simulate.cartridge_spec` takes it:
        ``n_frames`` (175), ``n_ctc`` (20), ``her2_mix`` (equal), ``seed`` (0; the same seed
        gives byte-identical files), ``frame_shape`` (1036 × 1384 px),
        ``leukocytes_per_frame`` ((30, 80)), ``decoys`` (True), ``confounders`` (0).

    Returns
    -------
    SimulatedCartridge
    """
    spec = cartridge_spec(cartridge_id, layout=layout, **spec_options)
    if reviewer not in REVIEWERS:
        raise ValueError(f"unknown reviewer {reviewer!r}; known: {', '.join(REVIEWERS)}")
    out_dir = Path(out_dir)
    cart = out_dir / spec.cartridge_id
    truth = out_dir / "truth" / spec.cartridge_id
    _LAYOUT_WRITER[layout].image_path(cart, spec.cartridge_id, 1, spec.n_frames).parent.mkdir(
        parents=True, exist_ok=True)
    truth.mkdir(parents=True, exist_ok=True)
    gallery = _Preview(_preview_frame(spec)) if preview else None
    objects = _write_frames(cart, spec, layout, gallery, bits=bits, encoding=encoding,
                            compression=compression)
    objects, presented = _review(objects, reviewer)
    counts = _write_truth(truth, spec, objects, bits, encoding, compression, reviewer)
    _write_metadata(cart, spec, layout, presented)
    if gallery is not None:
        _write_previews(truth, spec, gallery)
    return SimulatedCartridge(cart, truth, spec.cartridge_id, spec.n_frames, counts, spec,
                              sample_conditions(spec))


def _write_frames(cart: Path, spec: CartridgeSpec, layout: str, gallery: _Preview | None,
                  **tiff_options) -> list[SimulatedObject]:
    """Render every frame and write it as a TIFF in the layout's page order; the truth of
    every object, in frame order. ``tiff_options`` go to ``write_celltracks_frame``."""
    from ctcimg.io.tiff import write_celltracks_frame

    writer = _LAYOUT_WRITER[layout]
    pages = list(_PAGE_INDEX[layout])
    objects: list[SimulatedObject] = []
    for f in range(1, spec.n_frames + 1):
        pixels, frame_objects = render_frame(spec, f)
        write_celltracks_frame(writer.image_path(cart, spec.cartridge_id, f, spec.n_frames),
                               pixels[pages], **tiff_options)
        objects.extend(frame_objects)
        if gallery is not None:
            _collect(gallery, f, pixels, frame_objects)
    return objects


def _write_metadata(cart: Path, spec: CartridgeSpec, layout: str,
                    presented: list[SimulatedObject]) -> None:
    """The export's metadata, listing the presented candidates as the operator's events."""
    events = [ReviewerEvent(i + 1, o.frame, (o.bbox[0] + o.bbox[2]) / 2,
                            (o.bbox[1] + o.bbox[3]) / 2, o.bbox, o.reviewer_assigned, 1)
              for i, o in enumerate(presented)]
    if layout == "celltracks_xp":
        celltracks_xp.write_xp_metadata(cart, spec.cartridge_id, spec.n_frames, events)
    else:
        celltracks.write_celltracks_metadata(cart, spec.n_frames, spec.grid, spec.frame_shape,
                                             spec.pixel_size_um, events)
