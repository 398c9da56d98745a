"""Every third-party import of the package is declared in pyproject.toml (deptry: no missing, transitive-only or
unused dependency), so that a fresh install has what the code imports."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_deptry_finds_no_dependency_issue() -> None:
    pytest.importorskip("deptry", reason="deptry is in the test extra: pip install -e '.[test]'")
    result = subprocess.run(
        [sys.executable, "-m", "deptry", "tuneahead_ray"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_COLOR": "1"},
    )
    output = result.stdout + result.stderr
    findings = re.findall(r"DEP00\d .*", output)
    assert result.returncode == 0 and not findings, output


def test_ci_runs_the_readme_test_command_in_a_fresh_virtual_environment() -> None:
    readme = (ROOT / "README.md").read_text()
    commands = re.search(r"```bash\n(.*?)```", readme, re.S).group(1).strip().splitlines()
    assert len(commands) == 2, "the README starts with exactly two set-up commands"
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"python3? -m venv", ci), "CI builds its own virtual environment"
    assert commands[1] in ci.splitlines(), "CI runs the README's test command verbatim"
