"""Open a cartridge and say what was found: layout, frames, size, channels, grid, events.

Reads every frame once (unless --headers-only) so a damaged file is found before scoring.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("cartridge",
                        help="cartridge folder (CellTracks XML or XP export, or a TIFF folder)")
    parser.add_argument("--channels", help="page order for a generic TIFF folder, e.g. "
                        "DAPI,CK,CD45,HER2")
    parser.add_argument("--headers-only", action="store_true",
                        help="check the layout and first frame only; do not read every frame")


def run(args: argparse.Namespace) -> int:
    from ctcimg.io.cellsearch import read_cartridge

    cartridge = read_cartridge(args.cartridge, channels=args.channels)
    height, width = cartridge.frame_shape
    edge = sum(cartridge.frame_info(i).touches_cartridge_edge for i in range(len(cartridge)))
    grid = "unknown"
    if cartridge.grid:
        grid = f"{cartridge.grid[0]} x {cartridge.grid[1]} (serpentine)"
    assigned = sum(e.assigned for e in cartridge.reviewer_events)
    lines = [
        f"cartridge     {cartridge.id}",
        f"layout        {cartridge.layout}  (images in {cartridge.image_dir})",
        f"frames        {len(cartridge)}  ({edge} at the cartridge edge)",
        f"frame size    {width} x {height} px, stored {cartridge.stored_dtype}",
        f"pixel size    {cartridge.pixel_size_um} µm ({cartridge.pixel_size_source}); "
        f"frame {width * cartridge.pixel_size_um:.0f} x {height * cartridge.pixel_size_um:.0f} µm",
        f"pages         {', '.join(cartridge.page_channels)}",
        f"grid          {grid}",
        *cartridge.notes,
        f"events        {len(cartridge.reviewer_events)} operator events "
        f"({assigned} assigned as CTC by a reviewer)",
    ]
    print("\n".join(lines))
    if not args.headers_only:
        from ctcimg.progress import progress

        for _ in progress(cartridge, total=len(cartridge), unit="frame", desc="checking"):
            pass
        print(f"all {len(cartridge)} frames read back without error")
    return 0
