"""Fault injection: a screening on a multi-node cluster survives killed probe actors, a lost worker node and a
killed driver, and ends with the report and Parquet of an undisturbed run (``benchmarks/faults.py``, small)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests._harness.clusters import REPO, run_isolated

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: The benchmark's limit for each of its two screenings (undisturbed, disturbed), and the whole run's: below the
#: per-test timeout (600 s), so that a hang fails here and its cluster is torn down, not left running.
SCREENING_TIMEOUT_S = 200
RUN_TIMEOUT_S = 540


def test_a_screening_survives_actor_node_and_driver_kills(tmp_path: Path, predictor_cache: Path) -> None:
    out = tmp_path / "faults.json"
    command = [sys.executable, str(REPO / "benchmarks" / "faults.py"), "--candidates", "18", "--faults", "3"]
    command += ["--seed", "1", "--timeout", str(SCREENING_TIMEOUT_S), "--out", str(out)]
    # Its own Ray session dir (nothing else connects to its cluster), killed with everything it started at the end.
    run = run_isolated(command, timeout_s=RUN_TIMEOUT_S, env={"TUNEAHEAD_CACHE": str(predictor_cache)})
    assert out.exists(), run.tail()
    document = json.loads(out.read_text(encoding="utf-8"))
    facts = document.get("figures", document)  # a benchmark results document, or (before it) its figures alone
    assert sorted(f["kind"] for f in facts["injected"]) == ["actor", "driver", "node"], facts
    assert facts["driver_restarts"] == 1
    assert facts["checkpointed"] == facts["checkpointed_unique"] == facts["candidates"] == 18
    assert facts["report_equal"] and facts["parquet_equal"], facts
    assert run.returncode == 0, run.tail()
