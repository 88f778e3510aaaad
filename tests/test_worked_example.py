"""The README's worked example (simulate -> batch -> stats) runs and ends in a KM plot."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).parent.parent


def _worked_example_commands() -> list[list[str]]:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- worked-example.*?-->\n```bash\n(.*?)```", readme, re.S).group(1)
    commands = [shlex.split(line) for line in block.strip().splitlines()]
    assert all(c[0] == "ctcimg" for c in commands)
    return [[sys.executable, "-m", "ctcimg", *c[1:]] for c in commands]


def test_worked_example_runs_and_draws_the_kaplan_meier_plot(tmp_path):
    from PIL import Image

    for command in _worked_example_commands():
        done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
    report = tmp_path / "stats-report"
    assert (report / "report.html").stat().st_size > 10_000
    image = np.asarray(Image.open(report / "km.png").convert("RGB")).astype(int)
    height, width, _ = image.shape
    assert width >= 500 and height >= 350
    assert (image.min(axis=2) > 240).mean() > 0.6  # mostly white background
    red, green, blue = image[..., 0], image[..., 1], image[..., 2]
    blue_curve = (blue > red + 60) & (blue > green + 20)
    red_curve = (red > blue + 60) & (red > green + 60)
    assert blue_curve.sum() > 300 and red_curve.sum() > 300  # one step curve per group
    html = (report / "report.html").read_text()
    assert "Table 1" in html and "log-rank" in html.lower()
