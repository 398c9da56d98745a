"""benchmarks/gpu_probe.py, the GPU check, runs end to end on tiny shapes on the CPU, without Ray installed (the GPU
machine it is meant for has none, nor several other dependencies): every row measured, the dropout resume exact."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: What the GPU machine lacks (it has torch, transformers, peft, safetensors, tokenizers, pyarrow, pandas, pyyaml;
#: pydantic travels with the working tree).
ABSENT = ("ray", "lightgbm", "shap", "datasketch", "sklearn", "scipy", "fastapi", "starlette", "httpx", "matplotlib")
#: Runs the script as ``python benchmarks/gpu_probe.py ...`` would (as ``__main__``, its own path bootstrap
#: included), with those made unimportable first.
WITHOUT_RAY = (
    "import runpy, sys\n"
    f"for name in {ABSENT!r}:\n"
    "    sys.modules[name] = None\n"
    "sys.argv = sys.argv[1:]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n"
)


@pytest.mark.slow
def test_the_gpu_benchmark_dry_run_measures_every_row_without_ray(tmp_path) -> None:
    out = tmp_path / "gpu_probe.json"
    script = ROOT / "benchmarks" / "gpu_probe.py"
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_RAY, str(script), "--dry-run", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    document = json.loads(out.read_text())
    assert document["benchmark"] == "gpu_probe" and document["load"]["dry_run"]
    assert document["machine"]["versions"]["torch"] and document["machine"]["cores"] >= 1
    report = document["figures"]
    assert report["dry_run"] and len(report["rows"]) == 3
    timed = [row for row in report["rows"] if "probe_seconds" in row]
    assert len(timed) == 2 and all(row["probe_seconds"] > 0 and row["pure_seconds"] > 0 for row in timed)
    assert all(0 < row["real_share_of_padded"] <= 1 for row in timed)
    assert report["rows"][2]["planned_for_gib"] == 80 and "error" not in report["rows"][2]
    assert report["resume"]["equal"] and report["resume"]["max_loss_difference"] == 0.0
    header = next(line for line in result.stdout.splitlines() if line.startswith("| shape "))
    assert [cell.strip() for cell in header.strip("|").split("|")][:3] == ["shape", "batch", "K"]
