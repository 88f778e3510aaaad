"""The README's set-up commands are the ones CI runs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent


def _readme_commands() -> list[str]:
    return re.findall(r"```bash\n(python3 -m venv .*)\n```", (ROOT / "README.md").read_text())


def test_ci_runs_the_readme_test_command():
    commands = _readme_commands()
    assert len(commands) == 2
    main_job, test_command = commands
    assert "ctcimg score fixtures/" in main_job
    assert "pytest" in test_command
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci_lines


def test_readme_example_cartridge_exists():
    main_job = _readme_commands()[0]
    path = main_job.split("ctcimg score ")[1].split()[0]
    assert (ROOT / path).is_dir()
