"""Render a report to PNG with a headless Chromium (for checks, tests and benchmarks).

Optional: nothing else in ctcimg needs a browser. Looks for ``chromium`` (Debian's
package), ``chromium-browser`` or ``google-chrome`` on the PATH, or the executable named
by the ``CTCIMG_CHROMIUM`` environment variable.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

#: Flags for a quiet, offline, sandbox-free (root in a container) headless Chromium.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars")


def find_chromium() -> str | None:
    """Path of a Chromium executable, or None when there is none."""
    configured = os.environ.get("CTCIMG_CHROMIUM")
    if configured:
        return configured if Path(configured).exists() else shutil.which(configured)
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def screenshot(html: str | os.PathLike, png: str | os.PathLike, *,
               size: tuple[int, int] = (1400, 2000), budget_ms: int = 10000,
               chromium: str | None = None, timeout: float = 120.0) -> Path:
    """Screenshot a local HTML file with headless Chromium.

    Parameters
    ----------
    html
        The HTML file.
    png
        Where to write the screenshot.
    size
        Window width and height in CSS pixels.
    budget_ms
        Virtual time the page gets to run its scripts (decode and draw thumbnails) before
        the shot.
    chromium
        Executable; default :func:`find_chromium`.
    timeout
        Seconds before giving up.

    Returns
    -------
    Path
        ``png``.

    Raises
    ------
    FileNotFoundError
        No Chromium found.
    RuntimeError
        Chromium failed or wrote no image.
    """
    exe = chromium or find_chromium()
    if exe is None:
        raise FileNotFoundError("no chromium executable found (apt-get install chromium)")
    png = Path(png).resolve()
    png.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="ctcimg-chromium-") as profile:
        command = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                   f"--virtual-time-budget={int(budget_ms)}", f"--screenshot={png}",
                   f"--window-size={size[0]},{size[1]}", Path(html).resolve().as_uri()]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              check=False)
    if not png.is_file():
        raise RuntimeError(f"chromium wrote no screenshot (exit {done.returncode}): "
                           f"{done.stderr.strip()[-500:]}")
    return png
