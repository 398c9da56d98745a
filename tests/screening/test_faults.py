"""Fault injection: a screening on a multi-node cluster survives killed probe actors, a lost worker node and a
killed driver, and ends with the report and Parquet of an undisturbed run (``benchmarks/faults.py``, small)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def test_a_screening_survives_actor_node_and_driver_kills(tmp_path: Path) -> None:
    ray_tmp = tempfile.mkdtemp(prefix="tf-", dir="/tmp")  # its own Ray session dir: nothing else connects to it
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "TUNEAHEAD_CACHE": str(tmp_path / "cache")}
    env.pop("RAY_ADDRESS", None)
    out = tmp_path / "faults.json"
    command = [sys.executable, str(REPO / "benchmarks" / "faults.py"), "--candidates", "18", "--faults", "3"]
    proc = subprocess.Popen(
        [*command, "--seed", "1", "--out", str(out)], env=env, cwd=REPO, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        output, _ = proc.communicate(timeout=900)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output = proc.communicate()[0]
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert out.exists(), output[-4000:]
    facts = json.loads(out.read_text(encoding="utf-8"))
    assert sorted(f["kind"] for f in facts["injected"]) == ["actor", "driver", "node"], facts
    assert facts["driver_restarts"] == 1
    assert facts["checkpointed"] == facts["checkpointed_unique"] == facts["candidates"] == 18
    assert facts["report_equal"] and facts["parquet_equal"], facts
    assert proc.returncode == 0, output[-4000:]
