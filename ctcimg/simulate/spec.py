"""What determines a simulated cartridge: the spec, its validation, the grid and CTC capacity.

:class:`CartridgeSpec` holds every parameter; frames are pure functions of it
(:func:`ctcimg.simulate.render.render_frame`). :func:`cartridge_spec` validates arguments
into a spec, as :func:`ctcimg.simulate.simulate_cartridge` does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ctcimg.channels import FRAME_HEIGHT, FRAME_WIDTH, GRID_BY_FRAME_COUNT, PIXEL_SIZE_UM
from ctcimg.io.celltracks_xp import BOTTOM_UP_FRAME_COUNTS

#: cartridge layouts the simulator writes: the CellTracks XML layout and CellTracks XP
LAYOUTS = ("cellsearch", "celltracks_xp")


@dataclass(frozen=True)
class CartridgeSpec:
    """Everything that determines a simulated cartridge; frames are pure functions of it.

    Attributes
    ----------
    cartridge_id
        CellSearch-style id, e.g. ``"SIM000000.1.1"``.
    n_frames, n_ctc
        Frames in the cartridge and true CTCs (exact).
    her2_mix
        Fractions of CTCs at HER2 levels 0, 1+, 2+, 3+ (quota, largest remainder).
    seed
        Seed of every random draw.
    frame_shape
        (height, width) in pixels.
    leukocytes_per_frame
        (low, high) inclusive range of leukocytes drawn per frame.
    decoys
        Multiplier of the decoy rates :data:`~ctcimg.simulate.DECOY_RATE` (0 = no decoys,
        1 = default).
    grid
        (rows, columns) of the serpentine frame grid.
    pixel_size_um
        Pixel size in µm.
    confounders
        Multiplier of the confounder model (0 = none, the default; 1 = "messy"; 2 = harder);
        see :mod:`ctcimg.simulate.confounders`.
    scan_from_bottom
        Frames run serpentine from the bottom row (a 140-frame CellTracks XP export,
        :func:`ctcimg.io.celltracks_xp.bottom_up_position`) instead of from the top.
    """

    cartridge_id: str
    n_frames: int = 175
    n_ctc: int = 20
    her2_mix: tuple[float, float, float, float] = (0.25, 0.25, 0.25, 0.25)
    seed: int = 0
    frame_shape: tuple[int, int] = (FRAME_HEIGHT, FRAME_WIDTH)
    leukocytes_per_frame: tuple[int, int] = (30, 80)
    decoys: float = 1.0
    grid: tuple[int, int] = (5, 35)
    pixel_size_um: float = PIXEL_SIZE_UM
    confounders: float = 0.0
    scan_from_bottom: bool = False


def default_grid(n_frames: int) -> tuple[int, int]:
    """Grid (rows, columns) for a frame count: the CellSearch one when known, else exact.

    Unlisted counts get the most nearly square exact factorisation rows × cols = n
    (rows ≤ cols; a prime count gives 1 × n), so no grid cell lacks a frame.

    Examples
    --------
    >>> default_grid(175), default_grid(6), default_grid(7), default_grid(9)
    ((5, 35), (2, 3), (1, 7), (3, 3))
    """
    if n_frames in GRID_BY_FRAME_COUNT:
        return GRID_BY_FRAME_COUNT[n_frames]
    rows = max(r for r in range(1, math.isqrt(n_frames) + 1) if n_frames % r == 0)
    return rows, n_frames // rows


def ctc_capacity(n_frames: int, frame_shape: tuple[int, int],
                 pixel_size_um: float = PIXEL_SIZE_UM) -> int:
    """Most CTCs the simulator places in a cartridge (one per ~2500 µm² of frame area)."""
    area_um2 = frame_shape[0] * frame_shape[1] * pixel_size_um**2
    return n_frames * max(1, int(area_um2 / 2500))


def cartridge_spec(
    cartridge_id: str | None = None,
    *,
    n_frames: int = 175,
    n_ctc: int = 20,
    her2_mix: tuple[float, float, float, float] = (0.25, 0.25, 0.25, 0.25),
    seed: int = 0,
    frame_shape: tuple[int, int] = (FRAME_HEIGHT, FRAME_WIDTH),
    leukocytes_per_frame: int | tuple[int, int] = (30, 80),
    decoys: bool | float = True,
    confounders: float = 0.0,
    layout: str = "cellsearch",
) -> CartridgeSpec:
    """The validated spec :func:`~ctcimg.simulate.simulate_cartridge` builds from these
    arguments (it takes them all).

    Use with :func:`~ctcimg.simulate.render_frame` to regenerate a written frame without the
    files, e.g. ``render_frame(cartridge_spec(seed=1, n_frames=6), 3)``.

    Parameters
    ----------
    cartridge_id
        CellSearch-style id; default ``SIM<seed:06d>.1.1``.
    n_frames
        Frames (175 = the 5 × 35 CellSearch grid; other counts get a near-square grid).
    n_ctc
        Exact number of true CTCs, at most :func:`ctc_capacity`.
    her2_mix
        Fractions of CTCs at HER2 0, 1+, 2+, 3+ (normalised; split by largest remainder).
    seed
        Random seed; the same seed gives byte-identical files.
    frame_shape
        (height, width) of a frame in pixels, at least 64 × 64.
    leukocytes_per_frame
        Leukocytes per full-size frame, an int or an inclusive (low, high) range;
        scaled down for smaller frames.
    decoys
        Add CK debris, CK+CD45+ doubles, specks, bare nuclei and nucleus-beside blobs
        (``True``); a number multiplies their rates :data:`~ctcimg.simulate.DECOY_RATE`;
        ``False`` = none.
    confounders
        Rate multiplier of the confounder model (:mod:`ctcimg.simulate.confounders`):
        0 = none (the default, byte-identical to the simulator without it), 1 = "messy",
        2 = harder.
    layout
        The export written (:data:`LAYOUTS`); a 140-frame ``"celltracks_xp"`` cartridge
        runs serpentine from the bottom row (``CartridgeSpec.scan_from_bottom``).

    Raises
    ------
    ValueError
        Naming the first argument that is out of range.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
    _check_counts(n_frames, n_ctc, frame_shape)
    mix = _normalised_mix(her2_mix)
    fh, fw = (int(v) for v in frame_shape)
    if fh < 64 or fw < 64:
        raise ValueError(f"frame_shape must be at least 64 x 64 px, not {frame_shape}")
    if float(decoys) < 0:
        raise ValueError(f"decoys must be a bool or a non-negative rate multiplier, not {decoys}")
    if not 0 <= float(confounders) < math.inf:
        raise ValueError(f"confounders must be a non-negative rate multiplier, not {confounders}")
    leukocytes = _leukocyte_range(leukocytes_per_frame)
    if cartridge_id is None:
        cartridge_id = f"SIM{int(seed):06d}.1.1"
    if not cartridge_id or any(ch in cartridge_id for ch in "/\\") or cartridge_id[0] == ".":
        raise ValueError(f"invalid cartridge id {cartridge_id!r}")
    return CartridgeSpec(
        cartridge_id=str(cartridge_id), n_frames=int(n_frames), n_ctc=int(n_ctc),
        her2_mix=mix, seed=int(seed), frame_shape=(fh, fw), leukocytes_per_frame=leukocytes,
        decoys=float(decoys), grid=default_grid(int(n_frames)), confounders=float(confounders),
        scan_from_bottom=layout == "celltracks_xp" and int(n_frames) in BOTTOM_UP_FRAME_COUNTS,
    )


def _check_counts(n_frames: int, n_ctc: int, frame_shape: tuple[int, int]) -> None:
    """At least one frame, and no more CTCs than fit in the frames."""
    if int(n_frames) < 1:
        raise ValueError(f"n_frames must be at least 1, not {n_frames}")
    if int(n_ctc) < 0:
        raise ValueError(f"n_ctc must be non-negative, not {n_ctc}")
    if int(n_ctc) > ctc_capacity(int(n_frames), tuple(frame_shape)):
        raise ValueError(
            f"n_ctc={n_ctc} does not fit in {n_frames} frames of {frame_shape} px "
            f"(at most {ctc_capacity(int(n_frames), tuple(frame_shape))})"
        )


def _normalised_mix(her2_mix) -> tuple[float, float, float, float]:
    """Four non-negative HER2 fractions, scaled to sum to 1."""
    mix = tuple(float(v) for v in her2_mix)
    if len(mix) != 4 or any(v < 0 for v in mix) or sum(mix) <= 0:
        raise ValueError(f"her2_mix must be 4 non-negative fractions, not {her2_mix}")
    return tuple(v / sum(mix) for v in mix)


def _leukocyte_range(leukocytes_per_frame) -> tuple[int, int]:
    """An int n as (n, n); else an inclusive (low, high) range, 0 <= low <= high."""
    if isinstance(leukocytes_per_frame, (int, np.integer)):
        return int(leukocytes_per_frame), int(leukocytes_per_frame)
    leukocytes = tuple(int(v) for v in leukocytes_per_frame)
    if len(leukocytes) != 2 or leukocytes[0] > leukocytes[1] or leukocytes[0] < 0:
        raise ValueError(f"leukocytes_per_frame must be an int or (low, high), "
                         f"not {leukocytes_per_frame}")
    return leukocytes
